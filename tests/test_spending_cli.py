"""Spending limits against a coordinator on a real socket (uvicorn in a thread): the `billing.alert` event on
`WS /v1/jobs/ws` as a miner's completions cross the threshold (in the account's sequence, resumable with
`since`), and the commands a user types: `aitbc billing limit set|show|clear`, `aitbc billing alert`,
`aitbc admin accounts set-limit`, and an over-cap `aitbc client submit` that exits non-zero saying why."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from aitbc.api.app import create_app
from aitbc.cli.main import app
from aitbc.domain.clock import ManualClock
from aitbc.domain.errors import Forbidden, InvalidInput, NotFound, SpendingLimitReached
from aitbc.domain.manifest import public_key_text
from aitbc.domain.plans import Role
from aitbc.sdk.client import AsyncClient, Client
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.support.served import served_app_in_thread, served_in_thread

HOUR_ON_A100 = {"type": "command", "requirements": {"gpu_type": "a100"}, "timeout_seconds": 3600}  # holds 0.1


def aitbc(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def messages_until(ws: websocket.WebSocket, kind: str) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    while not received or received[-1]["kind"] != kind:
        received.append(json.loads(ws.recv()))
    return received


def test_the_alert_reaches_the_websocket_once_in_the_accounts_sequence(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False)
    clock = ManualClock()

    async def make_keys() -> dict[str, str]:
        async with coordinator_session(settings, clock) as coordinator:
            return {
                name: (await coordinator.accounts.create_key(name, role)).secret
                for name, role in (("alice", Role.CLIENT), ("farm", Role.MINER))
            }

    keys = asyncio.run(make_keys())
    alice, farm = {"X-Api-Key": keys["alice"]}, {"X-Api-Key": keys["farm"]}
    with served_app_in_thread(create_app(settings, clock)) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.put("/v1/billing/alert", json={"at": "0.15"}, headers=alice).status_code == 200
        stream = url.replace("http", "ws") + "/v1/jobs/ws"
        ws = websocket.create_connection(stream, header=[f"X-Api-Key: {keys['alice']}"], timeout=20)
        try:
            for _ in range(3):
                assert http.post("/v1/jobs", json=HOUR_ON_A100, headers=alice).status_code == 201
            gpus = [{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}]
            body = {"name": "box", "runtimes": ["command"], "gpus": gpus, "max_concurrency": 3}
            body["public_key"] = public_key_text(Ed25519PrivateKey.generate())
            miner = http.post("/v1/miners/register", json=body, headers=farm).json()["miner_id"]
            claimed = http.post(f"/v1/miners/{miner}/claim", json={"max_jobs": 3}, headers=farm).json()["jobs"]
            for job in claimed:
                started = http.post(
                    f"/v1/miners/{miner}/jobs/{job['job_id']}/start", json={"lease_id": job["lease_id"]}, headers=farm
                )
                assert started.status_code == 200, started.text
            clock.advance(3600)  # each job charged 0.1: the second takes the month past 0.15
            for job in claimed:
                done = http.post(
                    f"/v1/miners/{miner}/jobs/{job['job_id']}/complete",
                    json={"lease_id": job["lease_id"]},
                    headers=farm,
                )
                assert done.status_code == 200, done.text
            received = messages_until(ws, "billing.alert")
        finally:
            ws.close()
        alert, before = received[-1], received[-2]
        assert (alert["job_id"], alert["status"]) == (claimed[1]["job_id"], "completed")
        assert (before["job_id"], before["kind"], before["status"]) == (claimed[1]["job_id"], "status", "completed")
        assert alert["seq"] == before["seq"] + 1  # in the account's sequence, right after the crossing job's event
        assert alert["data"]["month"] == "2026-01"
        assert (Decimal(alert["data"]["threshold"]), Decimal(alert["data"]["charged"])) == (
            Decimal("0.15"),
            2 * Decimal("0.1"),
        )

        # The stream resumes across it, and the third job's completion set off no second alert.
        resumed = websocket.create_connection(
            f"{stream}?since={alert['seq'] - 1}", header=[f"X-Api-Key: {keys['alice']}"], timeout=20
        )
        try:
            again = json.loads(resumed.recv())
            after = messages_until(resumed, "status")
            while after[-1]["job_id"] != claimed[2]["job_id"] or after[-1]["status"] != "completed":
                after += messages_until(resumed, "status")
        finally:
            resumed.close()
        assert again == alert
        assert [m["kind"] for m in after].count("billing.alert") == 0
        shown = http.get("/v1/billing/alert", headers=alice).json()["alert"]
        assert shown["fired_this_month"] and shown["last_fired_job_id"] == claimed[1]["job_id"]


@dataclass
class Served:
    url: str
    http: httpx.Client  # with the client's key


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False)

    async def bootstrap() -> tuple[str, str]:
        async with coordinator_session(settings) as coordinator:
            admin, user = await coordinator.accounts.bootstrap()
        return admin.secret, user.secret

    admin_key, client_key = asyncio.run(bootstrap())
    with served_in_thread(settings) as url:
        monkeypatch.setenv("AITBC_URL", url)
        monkeypatch.setenv("AITBC_API_KEY", client_key)
        monkeypatch.setenv("AITBC_ADMIN_API_KEY", admin_key)
        monkeypatch.setenv("AITBC_CONFIG", str(tmp_path / "profile.json"))
        monkeypatch.setenv("COLUMNS", "250")
        monkeypatch.chdir(tmp_path)
        with httpx.Client(base_url=url, headers={"X-Api-Key": client_key}, timeout=30) as http:
            yield Served(url, http)


def submit_on_a100() -> tuple[int, str, str]:
    return aitbc("client", "submit", "--type", "command", "--input", "echo hi", "--gpu", "a100", "--timeout", "3600")


def test_limit_and_alert_from_the_command_line(served: Served) -> None:
    code, out, err = aitbc("billing", "limit", "set", "--monthly", "0.25")
    assert code == 0, out + err
    assert "Monthly spending limit set to 0.25" in out and "Remaining" in out
    code, out, _ = aitbc("billing", "limit", "show", "--json")
    shown = json.loads(out)
    assert code == 0 and Decimal(shown["monthly_limit"]) == Decimal("0.25") == Decimal(shown["remaining"])

    for _ in range(2):
        code, out, err = submit_on_a100()
        assert code == 0, out + err
    code, out, err = submit_on_a100()  # a third hold of 0.1 would pass 0.25
    assert code != 0
    assert "monthly spending limit of 0.25 AITBC" in err and "0.2 AITBC held" in err
    assert "aitbc billing limit set --monthly" in err
    assert len(served.http.get("/v1/jobs").json()["jobs"]) == 2
    code, out, _ = aitbc("billing", "limit", "show")
    assert code == 0 and "Held by unfinished jobs" in out and "0.2" in out and "0.25" in out

    code, out, err = aitbc("billing", "alert", "--at", "0.1")
    assert code == 0 and "0.1" in out, out + err
    code, out, _ = aitbc("billing", "alert", "--json")
    alert = json.loads(out)["alert"]
    assert code == 0 and Decimal(alert["at"]) == Decimal("0.1") and alert["last_fired_at"] is None
    code, out, _ = aitbc("billing", "alert")
    assert code == 0 and "never fired" in out
    code, out, err = aitbc("billing", "alert", "--at", "0.1", "--clear")
    assert code != 0 and "not both" in err
    code, out, _ = aitbc("billing", "alert", "--clear", "--json")
    assert code == 0 and json.loads(out)["alert"]["at"] is None

    for typed, says in (
        ("-5", "positive"),
        ("0", "positive"),
        ("abc", "not an amount"),
        ("1e3", "not an amount"),
        ("1000000000", "too large"),
        ("0.0000000001", "9 decimal places"),
    ):
        code, out, err = aitbc("billing", "limit", "set", "--monthly", typed)
        assert code != 0 and says in err, (typed, out, err)
    assert Decimal(served.http.get("/v1/billing/limit").json()["monthly_limit"]) == Decimal("0.25")

    code, out, err = aitbc("billing", "limit", "clear")
    assert code == 0 and "removed" in out, out + err
    code, out, err = submit_on_a100()
    assert code == 0, out + err


def test_an_admin_sets_an_accounts_limit(served: Served) -> None:
    code, out, err = aitbc("admin", "accounts", "set-limit", "--account", "default", "--monthly", "3")
    assert code == 0 and "Monthly spending limit of default: 3" in out, out + err
    assert Decimal(served.http.get("/v1/billing/limit").json()["monthly_limit"]) == 3
    code, out, err = aitbc("admin", "accounts", "set-limit", "--account", "nobody", "--monthly", "3")
    assert code != 0 and "not found" in err
    code, out, err = aitbc("admin", "accounts", "set-limit", "--account", "default")
    assert code != 0 and "--monthly" in err
    code, out, err = aitbc("admin", "accounts", "set-limit", "--account", "default", "--clear", "--json")
    assert code == 0 and json.loads(out)["monthly_limit"] is None, out + err
    assert served.http.get("/v1/billing/limit").json()["monthly_limit"] is None
    # A client's key cannot set another account's limit.
    code, out, err = aitbc(
        "admin",
        "accounts",
        "set-limit",
        "--account",
        "admin",
        "--monthly",
        "1",
        "--api-key",
        served.http.headers["X-Api-Key"],
    )
    assert code != 0 and "admin key" in err


async def test_the_sdk_sets_and_reads_limits(served: Served) -> None:
    admin_key = os.environ["AITBC_ADMIN_API_KEY"]
    async with AsyncClient(served.url, admin_key) as admin, AsyncClient(served.url) as user:
        await admin.grant_credits("default", "10")
        limited = await user.set_monthly_limit(Decimal("1.5"))
        assert limited.monthly_limit == Decimal("1.5") and limited.account == "default"
        alerted = await user.set_spending_alert(1)
        assert alerted.alert.at == 1 and not alerted.alert.fired_this_month
        assert (await user.spending()).monthly_limit == Decimal("1.5")
        with pytest.raises(SpendingLimitReached, match=r"monthly spending limit of 1\.5 AITBC"):
            await user.submit(type="command", requirements={"gpu_type": "a100"}, timeout_seconds=16 * 3600)
        with pytest.raises(InvalidInput):
            await user.set_monthly_limit("0")
        with pytest.raises(Forbidden):
            await user.set_account_limit("default", "9")
        assert (await admin.set_account_limit("default", "9")).monthly_limit == 9
        assert (await user.set_monthly_limit(None)).monthly_limit is None
        with pytest.raises(NotFound):
            await admin.set_account_limit("nobody", None)
    with Client(served.url) as sync:
        assert sync.spending().alert.at == 1 and sync.set_spending_alert(None).alert.at is None
