"""Two coordinator replicas over one PostgreSQL database: events, claim wake-ups and cancels cross between
them through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitbc.domain.plans import Role
from aitbc.protocol.miners import LogLine, LogsRequest
from aitbc.settings import Settings
from aitbc.wiring import Coordinator, open_coordinator
from tests.helpers import job_request, principal, register_miner

pytestmark = pytest.mark.postgres


@pytest.fixture
async def replicas(postgres_url: str, tmp_path: Path) -> AsyncIterator[tuple[Coordinator, Coordinator]]:
    opened = []
    for name in ("a", "b"):
        coordinator = await open_coordinator(
            Settings(data_dir=tmp_path / name, database_url=postgres_url, run_reaper=False)
        )
        await coordinator.start_relay()
        opened.append(coordinator)
    yield opened[0], opened[1]
    for coordinator in opened:
        await coordinator.close()


async def test_events_reach_subscribers_on_the_other_replica(replicas: tuple[Coordinator, Coordinator]) -> None:
    a, b = replicas
    alice = await principal(a, "alice", Role.CLIENT)
    stream = b.events.stream(alice.account.id, None, None)
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.2)
    job = (await a.jobs.submit(alice, job_request())).job
    event = await asyncio.wait_for(first, timeout=5)
    assert (event.job_id, event.status, event.seq) == (job.id, "pending", 1)
    await a.jobs.cancel(alice, job.id)
    second = await asyncio.wait_for(stream.__anext__(), timeout=5)
    assert (second.status, second.seq) == ("canceled", 2)
    await stream.aclose()  # type: ignore[attr-defined]


async def test_a_submit_on_one_replica_wakes_a_claim_on_the_other(replicas: tuple[Coordinator, Coordinator]) -> None:
    a, b = replicas
    alice = await principal(a, "alice", Role.CLIENT)
    owner = await principal(b, "farm", Role.MINER)
    miner = await register_miner(b, owner)
    waiting = asyncio.create_task(b.claiming.claim(owner, miner, 1, 20))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    job = (await a.jobs.submit(alice, job_request())).job
    claimed = await asyncio.wait_for(waiting, timeout=10)
    assert [c.job_id for c in claimed] == [job.id]
    assert time.monotonic() - started < 5  # woken, not timed out


async def test_a_cancel_on_one_replica_reaches_a_miner_held_on_the_other(
    replicas: tuple[Coordinator, Coordinator],
) -> None:
    a, b = replicas
    alice = await principal(a, "alice", Role.CLIENT)
    owner = await principal(b, "farm", Role.MINER)
    miner = await register_miner(b, owner)
    job = (await a.jobs.submit(alice, job_request())).job
    (assignment,) = await b.claiming.claim(owner, miner, 1, 0)
    held = asyncio.create_task(b.miners.heartbeat(owner, miner, [assignment.lease_id], wait_seconds=20))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await a.jobs.cancel(alice, job.id)
    (state,) = await asyncio.wait_for(held, timeout=10)
    assert state.cancel and time.monotonic() - started < 5


async def test_a_large_event_crosses_by_reference(replicas: tuple[Coordinator, Coordinator]) -> None:
    a, b = replicas
    alice = await principal(a, "alice", Role.CLIENT)
    owner = await principal(a, "farm", Role.MINER)
    miner = await register_miner(a, owner)
    job = (await a.jobs.submit(alice, job_request())).job
    (assignment,) = await a.claiming.claim(owner, miner, 1, 0)
    stream = b.events.stream(alice.account.id, None, job.id)

    async def first_log() -> dict[str, object]:
        async for event in stream:
            if event.kind == "log":
                return event.data
        raise AssertionError("the stream ended")

    found = asyncio.ensure_future(first_log())
    await asyncio.sleep(0.3)
    lines = [LogLine(stream="stdout", line="x" * 1000) for _ in range(20)]
    await a.running.logs(owner, miner, job.id, LogsRequest(lease_id=assignment.lease_id, lines=lines))
    data = await asyncio.wait_for(found, timeout=5)
    assert len(data["lines"]) == 20  # type: ignore[arg-type]
    await stream.aclose()  # type: ignore[attr-defined]
