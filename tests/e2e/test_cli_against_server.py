"""End to end: `aitbc serve` as a real process, driven by `aitbc client` / `aitbc admin` as a user would."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.protocol_miner import HttpMiner
from tests.support.stack import AITBC, Stack

pytestmark = pytest.mark.e2e


def test_first_start_makes_keys_and_a_profile_that_the_client_uses(stack: Stack) -> None:
    assert "admin  key: aitbc_" in stack.banner and "client key: aitbc_" in stack.banner
    profile = stack.profile("default")
    assert profile["url"] == stack.url and profile["api_key"] in stack.banner
    assert oct(Path(stack.environment["AITBC_CONFIG"]).stat().st_mode & 0o777) == "0o600"

    job_id = stack.cli("client", "submit", "--type", "command", "--input", "echo hello").stdout.strip()
    assert job_id.startswith("job_")
    status = stack.json("client", "status", "--job-id", job_id)
    assert status["status"] == "pending" and status["waiting_for"] == "no miner is connected"
    verbose = stack.cli("client", "status", "--job-id", job_id, "--verbose").stdout
    assert "Timeline" in verbose and "Requirements" in verbose
    human = stack.cli("client", "status", "--job-id", job_id).stdout
    assert job_id in human and "pending" in human and "no miner is connected" in human
    listed = stack.json("client", "list")
    assert [j["job_id"] for j in listed["jobs"]] == [job_id] and listed["total"] == 1
    assert stack.json("client", "list", "--status", "completed")["jobs"] == []


async def test_a_job_runs_end_to_end_and_watch_follows_it(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        created = await http.post(
            "/v1/admin/keys", json={"name": "farm", "role": "miner"}, headers={"X-Api-Key": stack.admin_key}
        )
        assert created.status_code == 201, created.text
        miner = HttpMiner(http, created.json()["api_key"], name="e2e", gpus=[{"model": "A100", "vram_gb": 80}])
        await miner.register()
        job_id = stack.cli(
            "client",
            "submit",
            "--type",
            "command",
            "--input",
            '{"script": "echo hi"}',
            "--gpu",
            "a100",
            "--priority",
            "high",
            "--timeout",
            "120",
            "--workflow-config",
            '{"temperature": 0.5}',
        ).stdout.strip()
        job = stack.json("client", "get", "--job-id", job_id)
        assert job["requirements"]["gpu_type"] == "a100" and job["priority"] == "high"
        assert job["params"] == {"temperature": 0.5} and job["timeout_seconds"] == 120

        (assignment,) = await miner.claim(wait=5)
        assert assignment["job_id"] == job_id and assignment["input"] == {"script": "echo hi"}
        lease = assignment["lease_id"]
        for verb, body in (("start", {}), ("progress", {"progress": 45, "message": "halfway"})):
            moved = await miner.call(verb, job_id, {"lease_id": lease, **body})
            assert moved.status_code == 200, moved.text
        status = stack.json("client", "status", "--job-id", job_id)
        assert (status["status"], status["progress"], status["miner_id"]) == ("running", 45, miner.miner_id)
        assert status["started_at"].endswith("Z")

        errors = (stack.root / "watch.err").open("w")
        watcher = subprocess.Popen(
            [*AITBC, "client", "watch", "--job-id", job_id, "--json"],
            env=stack.environment,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # the watcher is connected and replaying the job's events
        assert json.loads(first)["job_id"] == job_id and watcher.poll() is None
        progressed = await miner.call("progress", job_id, {"lease_id": lease, "progress": 90})
        assert progressed.status_code == 200, progressed.text
        completed = await miner.finish(job_id, lease, {"result.txt": b"hi\n"})
        assert completed.status_code == 200, completed.text
        out = first + watcher.stdout.read()  # through the same buffered reader: nothing it read ahead is lost
        assert watcher.wait(timeout=30) == 0, (stack.root / "watch.err").read_text()
        lines = [json.loads(line) for line in out.splitlines()]  # JSON Lines: an event a line, then the job
        assert {45, 90} <= {line["progress"] for line in lines} and lines[-1]["status"] == "completed"

        cancel = stack.cli("client", "cancel", "--job-id", job_id, "--force", check=False)
        assert cancel.returncode == 1 and "already completed" in cancel.stdout


def test_cancel_asks_for_confirmation_and_watch_reports_it(stack: Stack) -> None:
    job_id = stack.cli("client", "submit", "--type", "command", "--input", "sleep 600").stdout.strip()
    refused = stack.cli("client", "cancel", "--job-id", job_id, check=False)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert stack.json("client", "status", "--job-id", job_id)["status"] == "pending"
    canceled = stack.json("client", "cancel", "--job-id", job_id, "--force")
    assert canceled["outcome"] == "canceled"
    watch = stack.cli("client", "watch", "--job-id", job_id, check=False)
    assert watch.returncode == 2 and "canceled" in watch.stdout


def test_admin_commands_and_connection_settings(stack: Stack) -> None:
    created = stack.json("admin", "keys", "create", "--name", "carol", "--role", "client", "--plan", "pro")
    assert created["api_key"].startswith("aitbc_") and created["plan"] == "pro"
    accounts = stack.json("admin", "accounts", "list")
    assert {"admin", "default", "carol"} <= {a["name"] for a in accounts}
    env = {"AITBC_API_KEY": created["api_key"]}
    mine = stack.cli("client", "submit", "--type", "command", "--input", "x", env=env).stdout.strip()
    default_jobs = stack.json("client", "list")["jobs"]
    assert mine not in [j["job_id"] for j in default_jobs]
    other = stack.cli("client", "status", "--job-id", mine, check=False)
    assert other.returncode == 1 and "not found" in other.stderr
    keys = stack.json("admin", "keys", "list", "--account", "carol")
    stack.cli("admin", "keys", "revoke", keys[0]["key_id"])
    revoked = stack.cli("client", "list", env=env, check=False)
    assert revoked.returncode == 1 and "revoked" in revoked.stderr
    unreachable = stack.cli("client", "list", "--url", "http://127.0.0.1:9", check=False)
    assert unreachable.returncode == 1 and "cannot reach the coordinator" in unreachable.stderr
    no_key = stack.cli("client", "list", env={"AITBC_CONFIG": str(stack.data_dir / "none.json")}, check=False)
    assert no_key.returncode == 1 and "no API key" in no_key.stderr


def test_admin_keys_create_on_a_fresh_data_folder_without_a_server(tmp_path: Path) -> None:
    no_server = Stack(tmp_path)
    created = no_server.json(
        "admin", "keys", "create", "--name", "x", "--role", "admin", "--data-dir", str(tmp_path / "fresh")
    )
    assert created["api_key"].startswith("aitbc_")
    assert (tmp_path / "fresh" / "aitbc.db").exists()


def test_credits_balance_and_ledger_from_the_cli(stack: Stack) -> None:
    start = stack.json("client", "balance")
    assert (start["account"], start["held"], start["available"]) == ("default", "0.000000000", "1.000000000")
    granted = stack.json("admin", "keys", "create", "--name", "dora", "--role", "client")
    stack.cli("admin", "credits", "grant", "--account", "dora", "--amount", "2.5")
    direct = stack.json(
        "admin", "credits", "grant", "--account", "dora", "--amount", "0.5", "--data-dir", str(stack.data_dir)
    )
    assert direct["available"] == "4.000000000"  # 1 welcome + 2.5 + 0.5
    bad = stack.cli("admin", "credits", "grant", "--account", "dora", "--amount", "1e3", check=False)
    assert bad.returncode == 1 and "not an amount" in bad.stderr
    env = {"AITBC_API_KEY": granted["api_key"]}
    job_id = stack.cli(
        "client", "submit", "--type", "command", "--input", "x", "--gpu", "a100", "--timeout", "3600", env=env
    ).stdout.strip()
    balance = json.loads(stack.cli("client", "balance", "--json", env=env).stdout)
    assert (balance["held"], balance["available"]) == ("0.100000000", "3.900000000")
    ledger = json.loads(stack.cli("billing", "list", "--json", env=env).stdout)
    assert [e["kind"] for e in ledger] == ["grant", "grant", "grant", "hold"]
    assert ledger[-1]["job_id"] == job_id and ledger[-1]["amount"] == "-0.100000000"
    human = stack.cli("billing", "list", env=env).stdout
    assert "hold" in human and "-0.1" in human
    too_big = stack.cli(
        "client",
        "submit",
        "--type",
        "command",
        "--input",
        "x",
        "--gpu",
        "a100",
        "--gpu-count",
        "8",
        "--priority",
        "urgent",
        "--timeout",
        "86400",
        env=env,
        check=False,
    )
    assert too_big.returncode == 1 and "available balance" in too_big.stderr
