"""Reads in one query: a status GET is one SQL statement, `waiting_for` included (the live miners are in
memory); a list GET is at most two (the page, and `total` from the maintained per-status counts), and that
total stays exact through every move a job makes.

Statements are counted with an event listener on the coordinator's real engines, through the real app
in-process, on SQLite and PostgreSQL. Nothing runs in the background meanwhile: no reaper, no results sweeper
or receipt signer, and the principal version is not re-read (the principal cache's own tests cover it)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

from aitbc.api.app import create_app
from aitbc.domain.accounts import Principal
from aitbc.domain.clock import ManualClock
from aitbc.domain.job import JobStatus
from aitbc.domain.plans import Plan, Role
from aitbc.protocol.miners import FailRequest, FinishRequest
from aitbc.settings import Settings
from aitbc.storage.sql.tables import jobs
from aitbc.wiring import Coordinator, open_coordinator
from tests.helpers import job_request, principal, register_miner
from tests.test_authentication_cache import AN_HOUR, statements

Api = tuple[httpx.AsyncClient, Coordinator]
A100 = [{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}]


@pytest.fixture
async def quiet_api(tmp_path: Path, database_url: str, clock: ManualClock) -> AsyncIterator[Api]:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, run_reaper=False, run_results_sweeper=False
    )
    app = create_app(settings, clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aitbc.test") as http:
            coordinator: Coordinator = app.state.coordinator
            coordinator.accounts.principals.check_seconds = AN_HOUR
            yield http, coordinator


async def _key(
    coordinator: Coordinator, account: str, role: Role, plan: Plan = Plan.ENTERPRISE
) -> tuple[dict[str, str], Principal]:
    """A key on a plan whose rate limits the tests do not reach."""
    secret = (await coordinator.accounts.create_key(account, role, plan)).secret
    return {"X-Api-Key": secret}, await coordinator.accounts.authenticate(secret)


async def _status(http: httpx.AsyncClient, job_id: str, headers: dict[str, str]) -> dict[str, object]:
    response = await http.get(f"/v1/jobs/{job_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_a_status_get_is_one_statement_with_waiting_for(quiet_api: Api) -> None:
    http, coordinator = quiet_api
    alice, _ = await _key(coordinator, "alice", Role.CLIENT)
    _, farm = await _key(coordinator, "farm", Role.MINER)
    body = {"type": "command", "input": "echo hi", "requirements": {"gpu_type": "a100"}}
    pending = (await http.post("/v1/jobs", json=body, headers=alice)).json()["job_id"]
    other = (await http.post("/v1/jobs", json={"type": "command", "input": "echo"}, headers=alice)).json()["job_id"]
    await register_miner(coordinator, farm, "cpu")
    await _status(http, pending, alice)  # the principal cached
    with statements(coordinator) as seen:
        view = await _status(http, pending, alice)
    assert view["waiting_for"] == "no connected miner can run it (needs 1x a100)"
    assert len(seen) == 1, seen
    miner = await register_miner(coordinator, farm, "gpu", gpus=A100)
    claimed = await coordinator.claiming.claim(farm, miner, 1, 0)
    (assignment,) = [a for a in claimed if a.job_id == other] or claimed
    await coordinator.running.start(farm, miner, assignment.job_id, assignment.lease_id)
    await coordinator.finishing.complete(farm, miner, assignment.job_id, FinishRequest(lease_id=assignment.lease_id))
    for job_id in (pending, other):
        with statements(coordinator) as seen:
            view = await _status(http, job_id, alice)
        assert len(seen) == 1, seen
    with statements(coordinator) as seen:
        missing = await http.get("/v1/jobs/job_" + "0" * 32, headers=alice)
    assert missing.status_code == 404 and len(seen) <= 1


async def test_a_list_get_is_at_most_two_statements_whatever_the_filter(quiet_api: Api) -> None:
    http, coordinator = quiet_api
    alice, _ = await _key(coordinator, "alice", Role.CLIENT)
    for _ in range(25):
        assert (await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers=alice)).status_code == 201
    await http.get("/v1/jobs", headers=alice)
    now = coordinator.clock.now()
    queries: list[dict[str, str | list[str]]] = [
        {"limit": "20"},
        {"limit": "20", "status": "pending"},
        {"limit": "20", "status": ["pending", "completed"]},
        {"limit": "20", "from": (now - timedelta(days=1)).isoformat(), "to": (now + timedelta(days=1)).isoformat()},
    ]
    for params in queries:
        with statements(coordinator) as seen:
            page = await http.get("/v1/jobs", params=params, headers=alice)
        assert page.status_code == 200, page.text
        assert page.json()["total"] == 25 and len(page.json()["jobs"]) == 20
        assert len(seen) <= 2, (params, seen)
        cursor = page.json()["next_cursor"]
        with statements(coordinator) as seen:
            rest = await http.get("/v1/jobs", params={**params, "cursor": cursor}, headers=alice)
        assert rest.json()["total"] == 25 and len(rest.json()["jobs"]) == 5 and len(seen) <= 2


async def _real_counts(coordinator: Coordinator, account_id: str) -> dict[str, int]:
    query = select(jobs.c.status, func.count()).where(jobs.c.account_id == account_id).group_by(jobs.c.status)
    rows = await coordinator.database.read(lambda connection: connection.execute(query).all())
    return {status: int(n) for status, n in rows}


async def test_totals_stay_exact_through_every_move(quiet_api: Api) -> None:
    """A random walk of submits, claims, starts, completions, failures, cancels, deletes and retries; after each
    step every total the list answers equals a real COUNT."""
    http, coordinator = quiet_api
    alice, client = await _key(coordinator, "alice", Role.CLIENT)
    bob, _ = await _key(coordinator, "bob", Role.CLIENT)
    _, farm = await _key(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, farm, "m1")
    await http.post("/v1/jobs", json={"type": "command", "input": "bob's"}, headers=bob)
    leases: dict[str, str] = {}
    chooser = random.Random(10)
    for _ in range(60):
        by_status = await _ids_by_status(coordinator, client.account.id)
        step = chooser.choice(["submit", "submit", "claim", "start", "complete", "fail", "cancel", "delete", "retry"])
        if step == "submit":
            await coordinator.jobs.submit(client, job_request())
        elif step == "claim":
            for assignment in await coordinator.claiming.claim(farm, miner, 2, 0):
                leases[assignment.job_id] = assignment.lease_id
        elif step == "start" and by_status.get(JobStatus.ASSIGNED):
            job_id = chooser.choice(by_status[JobStatus.ASSIGNED])
            await coordinator.running.start(farm, miner, job_id, leases[job_id])
        elif step in ("complete", "fail") and by_status.get(JobStatus.RUNNING):
            job_id = chooser.choice(by_status[JobStatus.RUNNING])
            if step == "complete":
                await coordinator.finishing.complete(farm, miner, job_id, FinishRequest(lease_id=leases[job_id]))
            else:
                await coordinator.finishing.fail(farm, miner, job_id, FailRequest(lease_id=leases[job_id]))
        elif step in ("cancel", "delete") and by_status.get(JobStatus.PENDING):
            job_id = chooser.choice(by_status[JobStatus.PENDING])
            if step == "cancel":
                assert (await http.post(f"/v1/jobs/{job_id}/cancel", headers=alice)).status_code == 200
            else:
                assert (await http.delete(f"/v1/jobs/{job_id}", headers=alice)).status_code == 200
        elif step == "retry" and (by_status.get(JobStatus.FAILED) or by_status.get(JobStatus.CANCELED)):
            job_id = chooser.choice(by_status.get(JobStatus.FAILED, []) + by_status.get(JobStatus.CANCELED, []))
            assert (await http.post(f"/v1/jobs/{job_id}/retry", headers=alice)).status_code in (200, 201)
        coordinator.clock.advance(1)  # type: ignore[attr-defined]
        real = await _real_counts(coordinator, client.account.id)
        assert await coordinator.job_store.job_counts(client.account.id) == {JobStatus(s): n for s, n in real.items()}
        everything = (await http.get("/v1/jobs", params={"limit": "1"}, headers=alice)).json()
        assert everything["total"] == sum(real.values())
        for status in JobStatus:
            page = (await http.get("/v1/jobs", params={"limit": "1", "status": status.value}, headers=alice)).json()
            assert "total" in page, page
            assert page["total"] == real.get(status.value, 0), status
    assert len(real) >= 4  # the walk went through several statuses


async def _ids_by_status(coordinator: Coordinator, account_id: str) -> dict[JobStatus, list[str]]:
    query = select(jobs.c.id, jobs.c.status).where(jobs.c.account_id == account_id).order_by(jobs.c.id)
    found: dict[JobStatus, list[str]] = {}
    for job_id, status in await coordinator.database.read(lambda connection: connection.execute(query).all()):
        found.setdefault(JobStatus(status), []).append(job_id)
    return found


async def test_waiting_for_follows_miners_registering_going_away_and_coming_back(quiet_api: Api) -> None:
    http, coordinator = quiet_api
    alice, _ = await _key(coordinator, "alice", Role.CLIENT)
    _, farm = await _key(coordinator, "farm", Role.MINER)
    body = {"type": "command", "input": "echo hi", "requirements": {"gpu_type": "a100"}}
    job_id = (await http.post("/v1/jobs", json=body, headers=alice)).json()["job_id"]
    assert (await _status(http, job_id, alice))["waiting_for"] == "no miner is connected"
    await register_miner(coordinator, farm, "cpu")
    assert (await _status(http, job_id, alice))["waiting_for"] == ("no connected miner can run it (needs 1x a100)")
    gpu = await register_miner(coordinator, farm, "gpu", gpus=A100)
    assert (await _status(http, job_id, alice))["waiting_for"] == "waiting for a free miner"
    active = coordinator.settings.miner_active_seconds
    coordinator.clock.advance(active - 1)  # type: ignore[attr-defined]
    await coordinator.miners.heartbeat(farm, gpu, [])  # the GPU miner polls; the CPU one has gone quiet
    coordinator.clock.advance(2)  # type: ignore[attr-defined]
    assert (await _status(http, job_id, alice))["waiting_for"] == "waiting for a free miner"
    coordinator.clock.advance(active)  # type: ignore[attr-defined]
    assert (await _status(http, job_id, alice))["waiting_for"] == "no miner is connected"
    await coordinator.claiming.claim(farm, gpu, 1, 0)  # a claim is hearing from the miner too: it takes the job
    assert (await _status(http, job_id, alice))["waiting_for"] is None
    second = (await http.post("/v1/jobs", json=body, headers=alice)).json()["job_id"]
    assert (await _status(http, second, alice))["waiting_for"] == "waiting for a free miner"


async def test_a_restarted_coordinator_knows_the_miners_heard_from_before(
    tmp_path: Path, database_url: str, clock: ManualClock
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, run_reaper=False)
    first = await open_coordinator(settings, clock)
    try:
        farm = await principal(first, "farm", Role.MINER)
        await register_miner(first, farm, "gpu", gpus=A100)
    finally:
        await first.close()
    second = await open_coordinator(settings, clock)
    try:
        client = await principal(second, "alice", Role.CLIENT)
        job = (await second.jobs.submit(client, job_request(requirements={"gpu_type": "a100"}))).job
        assert await second.jobs.waiting_for(job) == "waiting for a free miner"
    finally:
        await second.close()
