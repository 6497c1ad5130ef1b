"""Wake-ups, on SQLite and PostgreSQL: a submit leases its job to a claim asleep on the same coordinator in the
transaction that stores it (a handoff: no second write, no query); a submit or requeue that wakes a claim
otherwise names its jobs, and the claim takes them by id (still a compare-and-set) without asking the store
what is queued; a wake that names no jobs (from another replica, a new miner) still sends the claimer to the
store (`tests/test_replicas.py` runs that across two coordinators)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aitbc.domain.errors import PaymentRequired
from aitbc.domain.job import MAX_TIMEOUT_SECONDS, JobStatus
from aitbc.domain.plans import Role
from aitbc.streaming.hub import EventHub
from aitbc.wiring import Coordinator
from tests.helpers import job_request, principal, register_miner
from tests.test_miner_batches import job_updates, transactions

QUEUE_QUERY = "ORDER BY jobs.priority_rank"  # the claim's query for what is queued


async def asleep(coordinator: Coordinator, count: int) -> None:
    for _ in range(2000):
        if coordinator.hub.claimers_waiting == count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the claims never went to sleep")


async def test_a_woken_claim_takes_the_submitted_job_without_querying_the_queue(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    claim = asyncio.create_task(coordinator.claiming.claim(owner, miner, 4, 20, start=True))
    await asleep(coordinator, 1)
    with transactions(coordinator) as seen:  # a batch is not handed off: it wakes the claim with its jobs
        (submitted,) = await coordinator.jobs.submit_many(client, [(job_request(), None)])
        (assignment,) = await asyncio.wait_for(claim, 10)
    assert assignment.job_id == submitted.job.id and assignment.status is JobStatus.RUNNING
    assert not [text for text in seen if QUEUE_QUERY in text]


async def test_two_woken_claims_never_both_get_the_job(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miners = [await register_miner(coordinator, owner, name) for name in ("m1", "m2")]
    claims = [asyncio.create_task(coordinator.claiming.claim(owner, m, 1, 1.5)) for m in miners]
    await asleep(coordinator, 2)
    job = (await coordinator.jobs.submit(client, job_request())).job
    answers: list[Any] = await asyncio.gather(*claims)
    assert sorted(len(answer) for answer in answers) == [0, 1]
    assert [a.job_id for answer in answers for a in answer] == [job.id]
    stored = await coordinator.job_store.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.ASSIGNED and stored.attempt == 1


def test_the_hub_hands_over_announced_jobs_only_when_it_knows_them_all() -> None:
    async def run() -> None:
        hub = EventHub()
        start = hub.work_version()
        await hub.wake_claimers()
        assert hub.new_work(start) is None  # a wake without jobs: ask the store
        middle = hub.work_version()
        assert hub.new_work(middle) == []
        await hub.work_available(["a", "b"])  # type: ignore[list-item]
        await hub.work_available(["c"])  # type: ignore[list-item]
        assert hub.new_work(middle) == ["a", "b", "c"]
        for _ in range(300):
            await hub.work_available(["x"])  # type: ignore[list-item]
        assert hub.new_work(middle) is None  # forgotten: ask the store

    asyncio.run(run())


async def test_a_submit_leases_its_job_to_a_sleeping_claim_in_its_own_transaction(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    claim = asyncio.create_task(coordinator.claiming.claim(owner, miner, 1, 20, start=True))
    await asleep(coordinator, 1)
    with transactions(coordinator) as seen:
        submitted = (await coordinator.jobs.submit(client, job_request())).job
        (assignment,) = await asyncio.wait_for(claim, 10)
    # One commit: the insert, its hold and event, the claim and the start, and nothing written after it.
    assert seen.count("COMMIT") == 1
    assert job_updates(seen) == 2
    assert submitted.status is JobStatus.PENDING  # the submit answers the job as it stored it
    assert assignment.job_id == submitted.id and assignment.status is JobStatus.RUNNING and assignment.attempt == 1
    stored = await coordinator.job_store.get_job(submitted.id)
    assert stored is not None and stored.status is JobStatus.RUNNING and stored.lease_id == assignment.lease_id
    assert stored.miner_id == miner
    moves = [event.data.get("move") for event in await coordinator.job_store.job_events(submitted.id, ["status"])]
    assert moves == [None, "claim", "start"]


async def test_a_sleeping_claim_is_not_handed_a_job_its_miner_cannot_run(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    embedder = await register_miner(coordinator, owner, "embedder", runtimes=("embedding",))
    runner = await register_miner(coordinator, owner, "runner")
    wrong = asyncio.create_task(coordinator.claiming.claim(owner, embedder, 1, 1.0))
    await asleep(coordinator, 1)
    right = asyncio.create_task(coordinator.claiming.claim(owner, runner, 1, 20))
    await asleep(coordinator, 2)
    job = (await coordinator.jobs.submit(client, job_request())).job
    (assignment,) = await asyncio.wait_for(right, 10)
    assert assignment.job_id == job.id
    assert await asyncio.wait_for(wrong, 10) == []


async def test_a_refused_submit_leaves_the_sleeping_claim_free_for_the_next_job(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    claim = asyncio.create_task(coordinator.claiming.claim(owner, miner, 1, 20, start=True))
    await asleep(coordinator, 1)
    with pytest.raises(PaymentRequired):  # its hold is past the balance: nothing stored, nothing leased
        await coordinator.jobs.submit(client, job_request(timeout_seconds=MAX_TIMEOUT_SECONDS, priority="urgent"))
    await asleep(coordinator, 1)
    job = (await coordinator.jobs.submit(client, job_request())).job
    (assignment,) = await asyncio.wait_for(claim, 10)
    assert assignment.job_id == job.id


async def test_a_replayed_submit_hands_nothing_to_a_sleeping_claim(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    first = (await coordinator.jobs.submit(client, job_request(), "key-1")).job
    miner = await register_miner(coordinator, owner)
    (taken,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    assert taken.job_id == first.id
    claim = asyncio.create_task(coordinator.claiming.claim(owner, miner, 1, 1.0))
    await asleep(coordinator, 1)
    replay = await coordinator.jobs.submit(client, job_request(), "key-1")
    assert not replay.created and replay.job.id == first.id
    assert await asyncio.wait_for(claim, 10) == []
