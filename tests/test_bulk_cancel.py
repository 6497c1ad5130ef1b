"""Cancelling by filter (`POST /v1/jobs/cancel`) through the real app on SQLite and PostgreSQL: every unfinished
job of the caller's that the filter matches, through the same lifecycle as a single cancel (pending → canceled at
once, assigned/running → canceling and the miner told), other tenants' jobs never touched, holds released (the
ledger balanced), bounded with `more`, and running jobs on a real miner stopped. Bad input is a 4xx that changes
nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from aitbc.cli.main import app
from aitbc.domain.plans import Plan, Role
from aitbc.protocol.miners import FailRequest
from aitbc.wiring import Coordinator
from tests.helpers import principal, register_miner
from tests.miner.inprocess import in_process
from tests.miner.test_command_runtime import command
from tests.test_job_waits import READY_SECONDS
from tests.test_templates import key

Api = tuple[httpx.AsyncClient, Coordinator]


async def submit(http: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> str:
    answer = await http.post("/v1/jobs", json={"type": "command", "input": "sleep 1", **body}, headers=headers)
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


async def statuses(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    page = (await http.get("/v1/jobs", params={"limit": 1000}, headers=headers)).json()
    return {job["job_id"]: job["status"] for job in page["jobs"]}


async def cancel(http: httpx.AsyncClient, headers: dict[str, str], body: Any, expect: int = 200) -> dict[str, Any]:
    answer = await http.post("/v1/jobs/cancel", json=body, headers=headers)
    assert answer.status_code == expect, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Until `check` answers True (read through the API): a readiness signal, not a timing."""
    try:
        async with asyncio.timeout(READY_SECONDS):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what} never happened") from None


async def balance(http: httpx.AsyncClient, headers: dict[str, str]) -> tuple[Decimal, Decimal]:
    shown = (await http.get("/v1/billing/balance", headers=headers)).json()
    return Decimal(shown["available"]), Decimal(shown["held"])


async def test_a_tag_cancels_the_callers_matching_jobs_and_releases_their_holds(api: Api) -> None:
    http, coordinator = api
    alice, bob = await key(coordinator, "alice"), await key(coordinator, "bob")
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    leased_ids = [await submit(http, alice, tags=["sweep"], priority="urgent") for _ in range(2)]
    leases = await coordinator.claiming.claim(owner, miner, 2, 0)
    assert sorted(lease.job_id for lease in leases) == sorted(leased_ids)
    running = next(lease for lease in leases if lease.job_id == leased_ids[0])
    await coordinator.running.start(owner, miner, running.job_id, running.lease_id)
    pending = [await submit(http, alice, tags=["sweep", "x"]) for _ in range(3)]
    kept = await submit(http, alice, tags=["keep"])
    theirs = [await submit(http, bob, tags=["sweep"]) for _ in range(2)]

    result = await cancel(http, alice, {"tag": "sweep"})
    assert (result["canceled"], result["canceling"], result["failed"], result["more"]) == (3, 2, 0, False)
    outcomes = {job["job_id"]: (job["outcome"], job["status"]) for job in result["jobs"]}
    assert outcomes == {
        **{job_id: ("canceled", "canceled") for job_id in pending},
        **{job_id: ("canceling", "canceling") for job_id in leased_ids},
    }
    assert (await statuses(http, bob)) == dict.fromkeys(theirs, "pending")
    assert (await statuses(http, alice))[kept] == "pending"

    states = await coordinator.miners.heartbeat(owner, miner, [lease.lease_id for lease in leases], wait_seconds=0)
    assert all(state.cancel for state in states) and len(states) == 2  # the miner is told
    for lease in leases:  # it stops them and says so
        await coordinator.finishing.fail(owner, miner, lease.job_id, FailRequest(lease_id=lease.lease_id))
    assert {job_id: (await statuses(http, alice))[job_id] for job_id in leased_ids} == dict.fromkeys(
        leased_ids, "canceled"
    )
    kept_hold = Decimal((await http.get(f"/v1/jobs/{kept}", headers=alice)).json()["max_cost"])
    available, held = await balance(http, alice)
    assert held == kept_hold and available + held == coordinator.settings.welcome_credit  # the rest came back
    assert (await cancel(http, alice, {"tag": "sweep"}))["jobs"] == []  # nothing unfinished matches now


async def test_a_cancel_takes_at_most_limit_jobs_and_says_more(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    made = [await submit(http, alice, name="batch 7") for _ in range(5)]
    rounds = []
    while True:
        result = await cancel(http, alice, {"name": "batch 7", "limit": 2})
        rounds.append((result["canceled"], result["more"]))
        if not result["more"]:
            break
    assert rounds == [(2, True), (2, True), (1, False)]
    assert await statuses(http, alice) == dict.fromkeys(made, "canceled")


async def test_statuses_and_dates_narrow_the_cancel(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    leased = await submit(http, alice, priority="urgent")
    await coordinator.claiming.claim(owner, miner, 1, 0)
    queued = await submit(http, alice)
    result = await cancel(http, alice, {"status": ["assigned", "running"]})
    assert [(job["job_id"], job["outcome"]) for job in result["jobs"]] == [(leased, "canceling")]
    now = coordinator.clock.now()
    assert (await cancel(http, alice, {"to": (now.replace(year=now.year - 1)).date().isoformat()}))["jobs"] == []
    result = await cancel(http, alice, {"from": now.date().isoformat(), "status": ["pending"]})
    assert [(job["job_id"], job["outcome"]) for job in result["jobs"]] == [(queued, "canceled")]


async def test_no_filter_needs_all_and_all_takes_only_the_callers_jobs(api: Api) -> None:
    http, coordinator = api
    alice, bob = await key(coordinator, "alice"), await key(coordinator, "bob")
    mine = [await submit(http, alice) for _ in range(3)]
    theirs = await submit(http, bob)
    refused = await cancel(http, alice, {}, expect=422)
    assert '"all": true' in refused["message"]
    assert (await cancel(http, alice, {"all": False}, expect=422))["error"] == "invalid_input"
    assert await statuses(http, alice) == dict.fromkeys(mine, "pending")
    result = await cancel(http, alice, {"all": True})
    assert result["canceled"] == 3 and await statuses(http, alice) == dict.fromkeys(mine, "canceled")
    assert await statuses(http, bob) == {theirs: "pending"}


@pytest.mark.parametrize(
    "body",
    [
        {"status": ["completed"]},
        {"status": ["canceling"]},
        {"status": "pending"},
        {"status": ["pending"] * 4},
        {"tag": "bad tag"},
        {"tag": "x" * 65},
        {"name": "x" * 201},
        {"name": "line\nbreak"},
        {"limit": 0},
        {"limit": 1001},
        {"all": "yes please"},
        {"tags": ["a"]},
        {"from": "yesterday"},
        {"from": "2026-02-30"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        [],
        "cancel everything",
    ],
)
async def test_bad_filters_are_422_and_change_nothing(api: Api, body: Any) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    mine = await submit(http, alice, tags=["a"])
    await cancel(http, alice, body, expect=422)
    assert await statuses(http, alice) == {mine: "pending"}


async def test_only_a_client_key_may_cancel_by_filter(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    mine = await submit(http, alice)
    miner = await key(coordinator, "farm", Role.MINER)
    assert (await http.post("/v1/jobs/cancel", json={"all": True}, headers=miner)).status_code == 403
    assert (await http.post("/v1/jobs/cancel", json={"all": True})).status_code == 401
    assert await statuses(http, alice) == {mine: "pending"}


async def test_running_jobs_on_a_real_miner_are_stopped(tmp_path: Path, database_url: str) -> None:
    async with in_process(tmp_path, database_url=database_url) as stack:
        headers = {"X-Api-Key": (await stack.coordinator.accounts.create_key("alice", Role.CLIENT, Plan.PRO)).secret}
        running = [await submit(stack.http, headers, input="echo up; sleep 600", tags=["stop-me"]) for _ in range(2)]
        agent = stack.agent(command(stack), drain=False, max_jobs=2, shutdown_grace_seconds=0.2)
        working = asyncio.create_task(agent.run())
        try:

            async def both_up() -> bool:
                """Both running, and each has printed its line: a job counts as running from its claim,
                before its script has run a line, and its partial result is checked below."""
                if set((await statuses(stack.http, headers)).values()) != {"running"}:
                    return False
                logs = [(await stack.http.get(f"/v1/jobs/{job_id}/logs", headers=headers)).json() for job_id in running]
                return all(any(line["line"] == "up" for line in log["lines"]) for log in logs)

            await eventually(both_up, "both jobs running on the miner, each past its first line")
            queued = await submit(stack.http, headers, input="echo never", tags=["stop-me"])
            result = await cancel(stack.http, headers, {"tag": "stop-me"})
            assert (result["canceled"], result["canceling"]) == (1, 2)
            for job_id in running:  # held until the miner has stopped it
                ended = await stack.http.get(f"/v1/jobs/{job_id}", headers={**headers, "Prefer": "wait=50"})
                assert ended.json()["status"] == "canceled", ended.json()
                assert ended.json()["result"] == "up\n"  # its partial results came back
            assert (await statuses(stack.http, headers))[queued] == "canceled"
            _, held = await balance(stack.http, headers)
            assert held == 0
        finally:
            agent.request_stop(immediately=True)
            await asyncio.wait_for(working, timeout=30)


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ([], "--all"),
        (["--job-id", "job_x", "--tag", "a"], "--job-id cancels one job"),
        (["--job-id", "job_x", "--all"], "--job-id cancels one job"),
        (["--tag", "a", "--status", "pending,completed"], "only jobs that are pending, assigned or running"),
    ],
)
def test_the_cli_refuses_a_cancel_it_cannot_read_before_it_calls(arguments: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["client", "cancel", *arguments], env={"AITBC_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 2, result.output
    assert says in result.stderr
