"""Two coordinator replicas over one PostgreSQL database: events, claim wake-ups and cancels cross between
them through LISTEN/NOTIFY, and so do revocations.

No test sleeps hoping the other side is ready: each starts once both relays have heard their own probe NOTIFY
(`listener_healthy`), and acts once the waiter on the other replica is in place (a subscriber registered, a
claim or heartbeat long poll asleep). Every long poll is given far longer than the test waits for it, so an
answer means it was woken, not that it timed out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from aitbc.domain.errors import Unauthorized
from aitbc.domain.plans import Role
from aitbc.protocol.miners import LogLine, LogsRequest
from aitbc.settings import Settings
from aitbc.wiring import Coordinator, open_coordinator
from tests.helpers import job_request, principal, register_miner

pytestmark = pytest.mark.postgres
LONG_POLL_SECONDS = 60  # the longest the settings allow; the tests wait at most READY_SECONDS for an answer
READY_SECONDS = 20
REVOCATION_SECONDS = 1.0  # what the issue promises for a revocation to reach every replica


@pytest.fixture
async def replicas(postgres_url: str, tmp_path: Path) -> AsyncIterator[tuple[Coordinator, Coordinator]]:
    opened = []
    for name in ("a", "b"):
        coordinator = await open_coordinator(
            Settings(data_dir=tmp_path / name, database_url=postgres_url, run_reaper=False)
        )
        await coordinator.start_relay()
        opened.append(coordinator)
    for coordinator in opened:
        assert coordinator.relay is not None and await coordinator.relay.listener_healthy(timeout=READY_SECONDS)
    yield opened[0], opened[1]
    for coordinator in opened:
        await coordinator.close()


async def ready(condition: Callable[[], bool], what: str) -> None:
    """Until `condition` holds: a waiter on the other replica has reached its wait (no network in between)."""
    try:
        async with asyncio.timeout(READY_SECONDS):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} was never ready") from None


async def test_events_reach_subscribers_on_the_other_replica(replicas: tuple[Coordinator, Coordinator]) -> None:
    a, b = replicas
    alice = await principal(a, "alice", Role.CLIENT)
    stream = b.events.stream(alice.account.id, None, None)
    first = asyncio.ensure_future(stream.__anext__())
    await ready(lambda: b.hub.subscriber_count == 1, "the subscriber on b")
    job = (await a.jobs.submit(alice, job_request())).job
    event = await asyncio.wait_for(first, timeout=READY_SECONDS)
    assert (event.job_id, event.status, event.seq) == (job.id, "pending", 1)
    await a.jobs.cancel(alice, job.id)
    second = await asyncio.wait_for(stream.__anext__(), timeout=READY_SECONDS)
    assert (second.status, second.seq) == ("canceled", 2)
    await stream.aclose()  # type: ignore[attr-defined]


async def test_a_submit_on_one_replica_wakes_a_claim_on_the_other(replicas: tuple[Coordinator, Coordinator]) -> None:
    a, b = replicas
    alice = await principal(a, "alice", Role.CLIENT)
    owner = await principal(b, "farm", Role.MINER)
    miner = await register_miner(b, owner)
    waiting = asyncio.create_task(b.claiming.claim(owner, miner, 1, LONG_POLL_SECONDS))
    await ready(lambda: b.hub.claimers_waiting == 1, "the claim on b asleep")  # it found the queue empty
    job = (await a.jobs.submit(alice, job_request())).job
    claimed = await asyncio.wait_for(waiting, timeout=READY_SECONDS)
    assert [c.job_id for c in claimed] == [job.id]


async def test_a_cancel_on_one_replica_reaches_a_miner_held_on_the_other(
    replicas: tuple[Coordinator, Coordinator],
) -> None:
    a, b = replicas
    alice = await principal(a, "alice", Role.CLIENT)
    owner = await principal(b, "farm", Role.MINER)
    miner = await register_miner(b, owner)
    job = (await a.jobs.submit(alice, job_request())).job
    (assignment,) = await b.claiming.claim(owner, miner, 1, 0)
    held = asyncio.create_task(b.miners.heartbeat(owner, miner, [assignment.lease_id], wait_seconds=LONG_POLL_SECONDS))
    await ready(lambda: b.hub.heartbeats_waiting(miner) == 1, "the heartbeat on b held")  # it saw no cancel
    await a.jobs.cancel(alice, job.id)
    (state,) = await asyncio.wait_for(held, timeout=READY_SECONDS)
    assert state.cancel


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
    await ready(lambda: b.hub.subscriber_count == 1, "the subscriber on b")
    lines = [LogLine(stream="stdout", line="x" * 1000) for _ in range(20)]
    await a.running.logs(owner, miner, job.id, LogsRequest(lease_id=assignment.lease_id, lines=lines))
    data = await asyncio.wait_for(found, timeout=READY_SECONDS)
    assert len(data["lines"]) == 20  # type: ignore[arg-type]
    await stream.aclose()  # type: ignore[attr-defined]


async def test_a_key_revoked_on_one_replica_is_refused_by_the_other_within_a_second(
    replicas: tuple[Coordinator, Coordinator],
) -> None:
    a, b = replicas
    b.accounts.principals.check_seconds = 3600  # b's version check never falls due: only the NOTIFY can tell it
    created = await a.accounts.create_key("alice", Role.CLIENT)
    assert (await b.accounts.authenticate(created.secret)).key_id == created.key.id
    assert len(b.accounts.principals) == 1  # b answers alice from its cache now
    await a.accounts.revoke_key(created.key.id)
    try:
        async with asyncio.timeout(REVOCATION_SECONDS):
            while True:
                await b.accounts.authenticate(created.secret)
                await asyncio.sleep(0.01)
    except Unauthorized as refused:
        assert "revoked" in str(refused)
    except TimeoutError:
        raise AssertionError(f"b still accepts the revoked key after {REVOCATION_SECONDS} s") from None


async def test_a_relay_hears_its_own_probe_and_not_after_it_stops(replicas: tuple[Coordinator, Coordinator]) -> None:
    a, _ = replicas
    assert a.relay is not None
    relay = a.relay
    assert await relay.listener_healthy(timeout=READY_SECONDS)
    await relay.stop()
    assert not await relay.listener_healthy(timeout=0.2)  # nothing listens: the probe is never heard


async def test_a_miner_registered_on_one_replica_is_live_on_the_other(
    replicas: tuple[Coordinator, Coordinator],
) -> None:
    """The other replica's in-memory view of live miners hears of it over the relay, with no query."""
    a, b = replicas
    alice = await principal(b, "alice", Role.CLIENT)
    job = (await b.jobs.submit(alice, job_request(requirements={"gpu_type": "a100"}))).job
    assert await b.jobs.waiting_for(job) == "no miner is connected"
    farm = await principal(a, "farm", Role.MINER)
    await register_miner(a, farm, "gpu", gpus=[{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}])
    since = b.jobs.miners_since()
    await ready(lambda: bool(b.live_miners.live(since)), "the miner on the other replica")
    assert await b.jobs.waiting_for(job) == "waiting for a free miner"
