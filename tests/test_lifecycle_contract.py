"""The storage and lifecycle contract, run against SQLite and a real PostgreSQL: guarded transitions,
leases, the reaper, cancellation from every status, idempotency, pagination, event numbering."""

from __future__ import annotations

import asyncio
from typing import get_args

import pytest

from aitbc.domain.clock import ManualClock
from aitbc.domain.errors import Conflict, NotFound
from aitbc.domain.job import FailureReason, JobStatus
from aitbc.domain.moves import Ending, Requeue, WriteSet
from aitbc.domain.plans import Plan, Role
from aitbc.domain.transitions import TRANSITIONS, Move
from aitbc.protocol.miners import FailRequest, FinishRequest, ProgressRequest
from aitbc.services.claiming import FIRST_CANDIDATES
from aitbc.storage.interfaces import JobFilter
from aitbc.wiring import Coordinator
from tests.helpers import job_request, principal, register_miner


async def test_submit_and_read_back(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    submitted = await coordinator.jobs.submit(client, job_request(priority="high", params={"a": 1}))
    job = await coordinator.jobs.get(client, submitted.job.id)
    assert job.id.startswith("job_") and len(job.id) >= 4 + 16
    assert job.status is JobStatus.PENDING
    assert job.spec.params == {"a": 1}
    assert job.spec.priority.value == "high"
    assert job.spec.timeout_seconds == 3600
    assert job.created_at.tzinfo is not None


async def test_other_tenant_sees_nothing(coordinator: Coordinator) -> None:
    alice = await principal(coordinator, "alice", Role.CLIENT)
    bob = await principal(coordinator, "bob", Role.CLIENT)
    job = (await coordinator.jobs.submit(alice, job_request())).job
    with pytest.raises(NotFound):
        await coordinator.jobs.get(bob, job.id)
    with pytest.raises(NotFound):
        await coordinator.jobs.cancel(bob, job.id)
    assert (await coordinator.jobs.get(alice, job.id)).status is JobStatus.PENDING


async def test_idempotency_key_returns_the_same_job(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    first = await coordinator.jobs.submit(client, job_request(), idempotency_key="k1")
    again = await coordinator.jobs.submit(client, job_request(), idempotency_key="k1")
    assert first.created and not again.created
    assert again.job.id == first.job.id
    with pytest.raises(Conflict):
        await coordinator.jobs.submit(client, job_request(input="echo other"), idempotency_key="k1")
    page = await coordinator.job_store.list_jobs(JobFilter(account_id=client.account.id), 10, None)
    assert page.total == 1


async def test_concurrent_idempotent_submits_make_one_job(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    results = await asyncio.gather(
        *(coordinator.jobs.submit(client, job_request(), idempotency_key="same") for _ in range(10))
    )
    assert len({r.job.id for r in results}) == 1
    assert sum(r.created for r in results) == 1


async def test_fifty_concurrent_claimers_one_job_exactly_one_lease(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    miner_owner = await principal(coordinator, "farm", Role.MINER)
    miners = [await register_miner(coordinator, miner_owner, f"m{i}") for i in range(50)]
    job = (await coordinator.jobs.submit(client, job_request())).job
    claims = await asyncio.gather(*(coordinator.claiming.claim(miner_owner, m, 1, 0) for m in miners))
    winners = [a for found in claims for a in found]
    assert len(winners) == 1
    assert winners[0].job_id == job.id
    stored = await coordinator.jobs.get(client, job.id)
    assert stored.status is JobStatus.ASSIGNED
    assert stored.lease_id == winners[0].lease_id
    assert stored.attempt == 1


async def test_claim_order_is_priority_then_age(coordinator: Coordinator, clock: ManualClock) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    low = (await coordinator.jobs.submit(client, job_request(priority="low"))).job
    clock.advance(1)
    normal_old = (await coordinator.jobs.submit(client, job_request())).job
    clock.advance(1)
    normal_new = (await coordinator.jobs.submit(client, job_request())).job
    clock.advance(1)
    urgent = (await coordinator.jobs.submit(client, job_request(priority="urgent"))).job
    claimed = await coordinator.claiming.claim(owner, miner, 4, 0)
    assert [a.job_id for a in claimed] == [urgent.id, normal_old.id, normal_new.id, low.id]


async def test_requirements_are_matched(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    job = (await coordinator.jobs.submit(client, job_request(requirements={"gpu_type": "a100"}))).job
    assert await coordinator.jobs.waiting_for(job) == "no miner is connected"
    cpu = await register_miner(coordinator, owner, "cpu")
    assert await coordinator.jobs.waiting_for(job) == "no connected miner can run it (needs 1x a100)"
    assert await coordinator.claiming.claim(owner, cpu, 1, 0) == []
    a100 = await register_miner(coordinator, owner, "gpu", gpus=[{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}])
    assert await coordinator.jobs.waiting_for(job) == "waiting for a free miner"
    big_request = job_request(requirements={"min_vram_gb": 100}, queue_timeout_seconds=3600)  # no miner has 100 GB
    big = (await coordinator.jobs.submit(client, big_request)).job
    claimed = await coordinator.claiming.claim(owner, a100, 2, 0)
    assert [a.job_id for a in claimed] == [job.id]
    assert (await coordinator.jobs.get(client, big.id)).status is JobStatus.PENDING
    assert "VRAM" in (await coordinator.jobs.waiting_for(big) or "")


async def test_long_poll_claim_wakes_on_submit(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    waiting = asyncio.create_task(coordinator.claiming.claim(owner, miner, 1, 20))
    while coordinator.hub.claimers_waiting == 0:  # the claim found the queue empty and sleeps
        assert not waiting.done()
        await asyncio.sleep(0.01)
    job = (await coordinator.jobs.submit(client, job_request())).job
    claimed = await asyncio.wait_for(waiting, timeout=5)
    assert [a.job_id for a in claimed] == [job.id]


async def _running_job(coordinator: Coordinator) -> tuple[str, str, str]:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    job = (await coordinator.jobs.submit(client, job_request())).job
    (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    await coordinator.running.start(owner, miner, job.id, assignment.lease_id)
    return job.id, miner, assignment.lease_id


async def test_lease_expiry_requeues_then_fails_as_miner_lost(coordinator: Coordinator, clock: ManualClock) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    job = (await coordinator.jobs.submit(client, job_request())).job
    leases = []
    for attempt in range(1, job.max_attempts + 1):
        (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
        assert assignment.attempt == attempt
        leases.append(assignment.lease_id)
        clock.advance(coordinator.settings.lease_seconds - 1)
        assert (await coordinator.reaper.run_once()).total == 0
        clock.advance(2)
        report = await coordinator.reaper.run_once()
        if attempt < job.max_attempts:
            assert report.requeued == 1
            current = await coordinator.jobs.get(client, job.id)
            assert current.status is JobStatus.PENDING
            assert current.miner_id is None and current.lease_id is None
        else:
            assert report.lost == 1
    final = await coordinator.jobs.get(client, job.id)
    assert final.status is JobStatus.FAILED
    assert final.failure_reason is FailureReason.MINER_LOST
    assert len(set(leases)) == job.max_attempts


async def test_heartbeat_and_progress_keep_the_lease(coordinator: Coordinator, clock: ManualClock) -> None:
    job_id, miner, lease = await _running_job(coordinator)
    owner = await principal(coordinator, "farm", Role.MINER)
    for _ in range(5):
        clock.advance(coordinator.settings.lease_seconds - 5)
        states = await coordinator.miners.heartbeat(owner, miner, [lease])
        assert states[0].active and not states[0].cancel
        await coordinator.reaper.run_once()
    clock.advance(coordinator.settings.lease_seconds - 5)
    directive = await coordinator.running.progress(owner, miner, job_id, ProgressRequest(lease_id=lease, progress=40))
    assert directive.status is JobStatus.RUNNING and not directive.cancel
    await coordinator.reaper.run_once()
    client = await principal(coordinator, "alice", Role.CLIENT)
    job = await coordinator.jobs.get(client, job_id)
    assert job.status is JobStatus.RUNNING and job.progress == 40


async def test_stale_lease_is_refused_and_changes_nothing(coordinator: Coordinator, clock: ManualClock) -> None:
    job_id, miner, old_lease = await _running_job(coordinator)
    owner = await principal(coordinator, "farm", Role.MINER)
    client = await principal(coordinator, "alice", Role.CLIENT)
    clock.advance(coordinator.settings.lease_seconds + 1)
    assert (await coordinator.reaper.run_once()).requeued == 1
    (second,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    assert second.lease_id != old_lease
    before = await coordinator.jobs.get(client, job_id)
    with pytest.raises(Conflict):
        await coordinator.running.progress(owner, miner, job_id, ProgressRequest(lease_id=old_lease, progress=99))
    with pytest.raises(Conflict):
        await coordinator.finishing.complete(owner, miner, job_id, FinishRequest(lease_id=old_lease))
    with pytest.raises(Conflict):
        await coordinator.finishing.fail(owner, miner, job_id, FailRequest(lease_id=old_lease))
    with pytest.raises(Conflict):
        await coordinator.running.start(owner, miner, job_id, old_lease)
    after = await coordinator.jobs.get(client, job_id)
    assert after == before
    done = await coordinator.finishing.complete(owner, miner, job_id, FinishRequest(lease_id=second.lease_id))
    assert done.status is JobStatus.COMPLETED
    again = await coordinator.finishing.complete(owner, miner, job_id, FinishRequest(lease_id=second.lease_id))
    assert again.status is JobStatus.COMPLETED


async def test_completion_is_applied_once(coordinator: Coordinator) -> None:
    job_id, miner, lease = await _running_job(coordinator)
    owner = await principal(coordinator, "farm", Role.MINER)
    results = await asyncio.gather(
        *(
            coordinator.finishing.complete(owner, miner, job_id, FinishRequest(lease_id=lease, exit_code=0))
            for _ in range(10)
        )
    )
    assert {r.status for r in results} == {JobStatus.COMPLETED}
    events = await coordinator.job_store.job_events(job_id, ["status"])
    assert [e.status for e in events].count("completed") == 1


async def test_cancel_from_every_status(coordinator: Coordinator, clock: ManualClock) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)

    pending = (await coordinator.jobs.submit(client, job_request())).job
    outcome = await coordinator.jobs.cancel(client, pending.id)
    assert (outcome.outcome, outcome.status) == ("canceled", JobStatus.CANCELED)

    assigned = (await coordinator.jobs.submit(client, job_request())).job
    (lease_a,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    outcome = await coordinator.jobs.cancel(client, assigned.id)
    assert (outcome.outcome, outcome.status) == ("canceling", JobStatus.CANCELING)
    # The miner hears about it and confirms with a (partial) finish: the job is canceled.
    states = await coordinator.miners.heartbeat(owner, miner, [lease_a.lease_id])
    assert states[0].cancel
    confirmed = await coordinator.finishing.fail(
        owner, miner, assigned.id, FailRequest(lease_id=lease_a.lease_id, message="stopped")
    )
    assert confirmed.status is JobStatus.CANCELED

    running = (await coordinator.jobs.submit(client, job_request())).job
    (lease_r,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    await coordinator.running.start(owner, miner, running.id, lease_r.lease_id)
    assert (await coordinator.jobs.cancel(client, running.id)).outcome == "canceling"
    directive = await coordinator.running.progress(
        owner, miner, running.id, ProgressRequest(lease_id=lease_r.lease_id, progress=50)
    )
    assert directive.cancel
    again = await coordinator.jobs.cancel(client, running.id)
    assert again.outcome == "canceling"
    # The miner never confirms: after the grace the coordinator cancels anyway and revokes the lease.
    clock.advance(coordinator.settings.cancel_grace_seconds + 1)
    assert (await coordinator.reaper.run_once()).force_canceled == 1
    forced = await coordinator.jobs.get(client, running.id)
    assert forced.status is JobStatus.CANCELED and forced.lease_id is None
    with pytest.raises(Conflict):
        await coordinator.finishing.complete(owner, miner, running.id, FinishRequest(lease_id=lease_r.lease_id))

    for finished in (pending.id, assigned.id, running.id):
        before = await coordinator.jobs.get(client, finished)
        late = await coordinator.jobs.cancel(client, finished)
        assert late.outcome == "failed" and late.reason == "already_canceled"
        assert await coordinator.jobs.get(client, finished) == before

    done = (await coordinator.jobs.submit(client, job_request())).job
    (lease_d,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    await coordinator.finishing.complete(owner, miner, done.id, FinishRequest(lease_id=lease_d.lease_id))
    late = await coordinator.jobs.cancel(client, done.id)
    assert (late.outcome, late.status, late.reason) == ("failed", JobStatus.COMPLETED, "already_completed")


async def test_a_claim_reaches_past_a_queue_head_it_cannot_run(coordinator: Coordinator) -> None:
    """A claim reads the head of the queue first; when every job there needs a GPU this miner lacks, it reads
    further and still finds the job it can run."""
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    for _ in range(FIRST_CANDIDATES + 5):
        await coordinator.jobs.submit(client, job_request(requirements={"gpu_type": "a100"}, timeout_seconds=1))
    runnable = (await coordinator.jobs.submit(client, job_request(timeout_seconds=1))).job
    cpu = await register_miner(coordinator, owner, "cpu")
    assert [a.job_id for a in await coordinator.claiming.claim(owner, cpu, 1, 0)] == [runnable.id]


async def test_pending_job_expires_after_queue_ttl(coordinator: Coordinator, clock: ManualClock) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    job = (await coordinator.jobs.submit(client, job_request(requirements={"gpu_type": "h100"}))).job
    clock.advance(coordinator.settings.queue_ttl_seconds - 1)
    assert (await coordinator.reaper.run_once()).expired == 0
    clock.advance(2)
    assert (await coordinator.reaper.run_once()).expired == 1
    expired = await coordinator.jobs.get(client, job.id)
    assert expired.status is JobStatus.FAILED
    assert expired.failure_reason is FailureReason.EXPIRED
    assert "no miner" in (expired.error or "")


async def test_retryable_failure_requeues_until_the_last_attempt(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    job = (await coordinator.jobs.submit(client, job_request())).job
    for _ in range(job.max_attempts):
        (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
        await coordinator.finishing.fail(
            owner, miner, job.id, FailRequest(lease_id=assignment.lease_id, reason="miner_error", retryable=True)
        )
    final = await coordinator.jobs.get(client, job.id)
    assert final.status is JobStatus.FAILED and final.failure_reason is FailureReason.MINER_ERROR


async def test_list_pages_return_each_job_once(coordinator: Coordinator, clock: ManualClock) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT, Plan.PRO)
    other = await principal(coordinator, "bob", Role.CLIENT)
    ids = set()
    for i in range(57):
        ids.add((await coordinator.jobs.submit(client, job_request())).job.id)
        if i % 3 == 0:
            clock.advance(1)  # several jobs share a timestamp: the cursor must still be exact
    await coordinator.jobs.submit(other, job_request())
    seen: list[str] = []
    cursor = None
    while True:
        page = await coordinator.jobs.list(client, [], None, None, 10, cursor)
        assert page.total == 57
        seen.extend(job.id for job in page.jobs)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 57 and set(seen) == ids


async def test_list_filters_by_status_and_time(coordinator: Coordinator, clock: ManualClock) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    early = (await coordinator.jobs.submit(client, job_request())).job
    clock.advance(86400 * 3)
    late = (await coordinator.jobs.submit(client, job_request())).job
    await coordinator.jobs.cancel(client, late.id)
    canceled = await coordinator.jobs.list(client, [JobStatus.CANCELED], None, None, 10, None)
    assert [j.id for j in canceled.jobs] == [late.id]
    recent = await coordinator.jobs.list(
        client, [], clock.now() - __import__("datetime").timedelta(days=1), None, 10, None
    )
    assert [j.id for j in recent.jobs] == [late.id]
    old = await coordinator.jobs.list(
        client, [], None, early.created_at + __import__("datetime").timedelta(days=1), 10, None
    )
    assert [j.id for j in old.jobs] == [early.id]


async def test_every_transition_is_an_event_numbered_per_account(coordinator: Coordinator) -> None:
    job_id, miner, lease = await _running_job(coordinator)
    owner = await principal(coordinator, "farm", Role.MINER)
    client = await principal(coordinator, "alice", Role.CLIENT)
    await coordinator.running.progress(owner, miner, job_id, ProgressRequest(lease_id=lease, progress=10))
    await coordinator.finishing.complete(owner, miner, job_id, FinishRequest(lease_id=lease))
    events = await coordinator.job_store.events_since(client.account.id, 0, job_id, 100)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [(e.kind, e.status) for e in events] == [
        ("status", "pending"),
        ("status", "assigned"),
        ("status", "running"),
        ("progress", "running"),
        ("status", "completed"),
    ]
    bob = await principal(coordinator, "bob", Role.CLIENT)
    bob_job = (await coordinator.jobs.submit(bob, job_request())).job
    assert [e.seq for e in await coordinator.job_store.events_since(bob.account.id, 0, bob_job.id, 10)] == [1]


def test_transition_table_matches_the_design() -> None:
    edges = {(source.value, t.target.value) for t in TRANSITIONS.values() for source in t.sources}
    assert edges == {
        ("pending", "assigned"),
        ("assigned", "running"),
        ("running", "completed"),
        ("assigned", "completed"),
        ("pending", "failed"),
        ("assigned", "failed"),
        ("running", "failed"),
        ("assigned", "pending"),
        ("running", "pending"),
        ("pending", "canceled"),
        ("assigned", "canceling"),
        ("running", "canceling"),
        ("canceling", "canceled"),
    }
    assert TRANSITIONS[Move.COMPLETE].needs_lease and not TRANSITIONS[Move.CANCEL_PENDING].needs_lease


def test_each_move_has_one_write_set_bound_to_it() -> None:
    """A caller names a move by its write-set: one type per move of the table, the move a class constant that
    no caller can set, and the moves that end a job exactly the ones the lifecycle settles."""
    kinds = get_args(WriteSet)
    assert sorted(kind.move for kind in kinds) == sorted(Move)
    assert set(get_args(Ending)) == {kind for kind in kinds if TRANSITIONS[kind.move].target.is_terminal}
    with pytest.raises(TypeError):
        Requeue(error="lost", move=Move.COMPLETE)  # type: ignore[call-arg]


async def test_ten_thousand_jobs_page_by_page_each_exactly_once(coordinator: Coordinator, clock: ManualClock) -> None:
    """Bulk-inserted (the listing is under test, not submission): many share a timestamp, so the keyset
    cursor's tie-break on the id is what keeps every page exact."""
    from sqlalchemy import insert

    from aitbc.domain.identifiers import new_job_id
    from aitbc.storage.sql.tables import jobs

    client = await principal(coordinator, "alice", Role.CLIENT)
    rows = []
    for index in range(10_000):
        moment = clock.now()
        rows.append(
            {
                "id": new_job_id(),
                "account_id": client.account.id,
                "type": "command",
                "params": {},
                "gpu_count": 1,
                "priority": "normal",
                "priority_rank": 1,
                "timeout_seconds": 60,
                "status": "completed" if index % 2 else "failed",
                "progress": 100,
                "attempt": 1,
                "max_attempts": 3,
                "created_at": moment,
                "updated_at": moment,
                "queue_expires_at": moment,
                "results_state": "none",
            }
        )
        if index % 7 == 0:
            clock.advance(1)
    await coordinator.database.write(lambda connection: connection.execute(insert(jobs), rows))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await coordinator.jobs.list(client, [], None, None, 1000, cursor)
        pages += 1
        seen.extend(job.id for job in page.jobs)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 10 and len(seen) == 10_000
    assert set(seen) == {row["id"] for row in rows}


async def test_a_restarted_coordinator_gives_miners_a_lease_to_reconnect(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    job_id, _miner, _lease = await _running_job(coordinator)
    clock.advance(coordinator.settings.lease_seconds * 5)  # the coordinator was down for a while
    assert await coordinator.reaper.grace_after_start() == 1
    assert (await coordinator.reaper.run_once()).total == 0
    clock.advance(coordinator.settings.lease_seconds + 1)  # the miner never came back
    assert (await coordinator.reaper.run_once()).requeued == 1
    client = await principal(coordinator, "alice", Role.CLIENT)
    assert (await coordinator.jobs.get(client, job_id)).status is JobStatus.PENDING


async def test_a_second_miner_with_the_same_name_and_another_key_is_refused(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    owner = await principal(coordinator, "farm", Role.MINER)
    first = await register_miner(coordinator, owner, "rig")
    with pytest.raises(Conflict, match="already running with another key"):
        await register_miner(coordinator, owner, "rig")
    clock.advance(coordinator.settings.miner_active_seconds + 1)  # the first one is gone: the name is free again
    assert await register_miner(coordinator, owner, "rig") == first
