"""`JobStore` beyond transitions: submit (idempotency, holds, the active-job limit), reading and paging jobs,
the queue, progress under a lease, lease upkeep, expiry, the per-account event sequence, statistics."""

from __future__ import annotations

import asyncio

import pytest

from aitbc.domain.accounts import Account
from aitbc.domain.errors import InvalidInput, PaymentRequired, RateLimited
from aitbc.domain.job import JobStatus, Priority
from aitbc.domain.moves import Billed, Complete, MinerReport, Start
from aitbc.domain.package import ResultsState
from aitbc.domain.transitions import Move
from aitbc.storage.interfaces import JobFilter, LedgerEntry, StoredFile
from aitbc.storage.sql.jobs import encode_cursor
from tests.store_contract.conftest import T0, Stores, at, job_row


async def test_a_submitted_job_reads_back_with_its_first_event(stores: Stores, alice: Account) -> None:
    row = job_row(alice, type="embedding", model="mini", params={"a": 1}, priority=Priority.HIGH)
    job, event = await stores.jobs.insert_job(row, T0)
    assert event is not None
    assert (event.seq, event.job_id, event.kind, event.status, event.at) == (1, job.id, "status", "pending", T0)
    assert await stores.jobs.get_job(job.id) == job
    assert (job.status, job.spec.type, job.spec.model, job.spec.params) == (
        JobStatus.PENDING,
        "embedding",
        "mini",
        {"a": 1},
    )
    assert job.spec.priority.value == "high" and job.created_at == T0 and job.created_at.tzinfo is not None
    assert await stores.jobs.request_hash(job.id) == "a" * 64
    assert await stores.jobs.get_job("job_missing") is None
    assert await stores.jobs.request_hash("job_missing") is None


async def test_an_idempotency_key_gives_back_the_first_job_and_no_event(stores: Stores, alice: Account) -> None:
    first, event = await stores.jobs.insert_job(job_row(alice, idempotency_key="k1"), T0)
    again, none = await stores.jobs.insert_job(job_row(alice, idempotency_key="k1", request_hash="d" * 64), at(1))
    assert event is not None and none is None
    assert again == first
    bob = await stores.account("bob")
    other, _ = await stores.jobs.insert_job(job_row(bob, idempotency_key="k1"), T0)  # keys are per account
    assert other.id != first.id
    page = await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 10, None)
    assert page.total == 1


async def test_racing_submits_with_one_key_store_one_job(stores: Stores, alice: Account) -> None:
    answers = await asyncio.gather(
        *(stores.jobs.insert_job(job_row(alice, idempotency_key="same"), T0) for _ in range(5))
    )
    assert len({job.id for job, _ in answers}) == 1
    assert sum(event is not None for _, event in answers) == 1


async def test_a_submit_holds_its_cost_or_stores_nothing(stores: Stores, alice: Account) -> None:
    await stores.ledger.append([LedgerEntry(alice.id, "grant", 1000)], T0)
    held, _ = await stores.jobs.insert_job(job_row(alice, hold_units=600), T0)
    assert await stores.ledger.balance_units(alice.id) == 400
    assert await stores.ledger.held_units(alice.id) == 600

    with pytest.raises(PaymentRequired):
        await stores.jobs.insert_job(job_row(alice, hold_units=600), T0)
    with pytest.raises(RateLimited):
        await stores.jobs.insert_job(job_row(alice, hold_units=100), T0, max_active=1)
    page = await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 10, None)
    assert [job.id for job in page.jobs] == [held.id]
    assert await stores.ledger.balance_units(alice.id) == 400
    assert [e.kind for e in await stores.ledger.entries(alice.id, None, None, 10, 0)] == ["grant", "hold"]

    await stores.move(held, Move.CANCEL_PENDING)  # no longer active: the limit counts unfinished jobs
    assert (await stores.jobs.insert_job(job_row(alice, hold_units=100), T0, max_active=1))[1] is not None


async def test_pages_walk_newest_first_each_job_once_even_as_jobs_arrive(stores: Stores, alice: Account) -> None:
    bob = await stores.account("bob")
    made = [await stores.submit(alice, created_at=at(second)) for second in (1, 2, 2, 2, 3, 4)]
    await stores.submit(bob, created_at=at(5))
    expected = sorted(made, key=lambda job: (job.created_at, job.id), reverse=True)

    seen: list[str] = []
    cursor: str | None = None
    arrived = False
    while True:
        page = await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 2, cursor)
        assert page.total == len(made) + arrived
        seen += [job.id for job in page.jobs]
        if not arrived:  # a newer job arrives mid-walk: the walk goes on below the cursor, unchanged
            await stores.submit(alice, created_at=at(9))
            arrived = True
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [job.id for job in expected]

    last = await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 10, None, with_total=False)
    assert last.next_cursor is None and len(last.jobs) == len(made) + 1
    with pytest.raises(InvalidInput):
        await stores.jobs.list_jobs(JobFilter(), 2, "not a cursor")


async def test_jobs_filter_by_account_status_and_creation_time(stores: Stores, alice: Account) -> None:
    bob = await stores.account("bob")
    early = await stores.submit(alice, created_at=at(1))
    middle = await stores.submit(alice, created_at=at(2))
    late = await stores.submit(alice, created_at=at(3))
    theirs = await stores.submit(bob, created_at=at(2))
    await stores.move(middle, Move.CANCEL_PENDING)

    async def ids(where: JobFilter) -> list[str]:
        page = await stores.jobs.list_jobs(where, 10, None)
        assert page.total == len(page.jobs)
        return [job.id for job in page.jobs]

    assert await ids(JobFilter()) == [late.id, *sorted([middle.id, theirs.id], reverse=True), early.id]
    assert await ids(JobFilter(account_id=bob.id)) == [theirs.id]
    assert await ids(JobFilter(account_id=alice.id, statuses=[JobStatus.CANCELED])) == [middle.id]
    pending = [JobStatus.PENDING, JobStatus.RUNNING]
    assert await ids(JobFilter(account_id=alice.id, statuses=pending)) == [late.id, early.id]
    assert await ids(JobFilter(account_id=alice.id, created_from=at(2), created_to=at(3))) == [middle.id]


async def test_the_queue_is_pending_jobs_of_the_asked_types_by_priority_then_age(
    stores: Stores, alice: Account
) -> None:
    old = await stores.submit(alice, created_at=at(1))
    urgent = await stores.submit(alice, created_at=at(3), priority=Priority.URGENT)
    young = await stores.submit(alice, created_at=at(2))
    await stores.submit(alice, type="embedding", created_at=at(0))
    await stores.claim(await stores.submit(alice, created_at=at(0)))
    assert [job.id for job in await stores.jobs.queued(["command"], 10)] == [urgent.id, old.id, young.id]
    assert [job.id for job in await stores.jobs.queued(["command"], 2)] == [urgent.id, old.id]
    assert len(await stores.jobs.queued(["command", "embedding"], 10)) == 4
    assert await stores.jobs.queued(["reencode"], 10) == []


async def test_progress_needs_the_live_lease_and_extends_it(stores: Stores, alice: Account) -> None:
    job = await stores.claim(await stores.submit(alice), "lease_1", "miner_1", until=60)
    found = await stores.jobs.record_progress(job.id, "miner_1", "lease_1", at(5), 40, "half", at(100), at(120))
    assert found is not None
    updated, event = found
    assert (updated.progress, updated.progress_message, updated.estimated_completion) == (40, "half", at(100))
    assert updated.lease_expires_at == at(120)
    assert event is not None and (event.kind, event.progress, event.data["message"]) == ("progress", 40, "half")

    quiet = await stores.jobs.record_progress(job.id, "miner_1", "lease_1", at(6), None, None, None, at(130))
    assert quiet is not None and quiet[1] is None and quiet[0].lease_expires_at == at(130)  # a keep-alive only
    assert await stores.jobs.record_progress(job.id, "miner_2", "lease_1", at(7), 50, None, None, at(140)) is None
    assert await stores.jobs.record_progress(job.id, "miner_1", "lease_9", at(7), 50, None, None, at(140)) is None

    await stores.move(job, Move.REQUEST_CANCEL)
    canceling = await stores.jobs.record_progress(job.id, "miner_1", "lease_1", at(8), 90, None, None, at(150))
    assert canceling is not None and canceling[1] is None
    assert (canceling[0].status, canceling[0].progress) == (JobStatus.CANCELING, 40)


async def test_a_miner_extends_its_own_leases_and_learns_of_every_job_they_hold(stores: Stores, alice: Account) -> None:
    mine = await stores.claim(await stores.submit(alice), "lease_a", "miner_1", until=60)
    canceling = await stores.move(
        await stores.claim(await stores.submit(alice), "lease_b", "miner_1", until=60), Move.REQUEST_CANCEL
    )
    theirs = await stores.claim(await stores.submit(alice), "lease_c", "miner_2", until=60)
    held = await stores.jobs.extend_leases("miner_1", ["lease_a", "lease_b", "lease_c", "lease_gone"], at(300))
    assert sorted(job.id for job in held) == sorted([mine.id, canceling.id])
    assert {job.id: job.status for job in held}[canceling.id] is JobStatus.CANCELING
    after = await stores.jobs.get_job(mine.id)
    assert after is not None and after.lease_expires_at == at(300)
    untouched = await stores.jobs.get_job(theirs.id)
    assert untouched is not None and untouched.lease_expires_at == at(60)
    assert await stores.jobs.extend_leases("miner_1", [], at(300)) == []


async def test_renewing_running_leases_moves_only_those_ending_sooner(stores: Stores, alice: Account) -> None:
    soon = await stores.claim(await stores.submit(alice), "lease_a", until=60)
    later = await stores.claim(await stores.submit(alice), "lease_b", until=600)
    pending = await stores.submit(alice)
    assert await stores.jobs.renew_running_leases(at(300)) == 1
    after = [await stores.jobs.get_job(job.id) for job in (soon, later, pending)]
    assert [job.lease_expires_at for job in after if job is not None] == [at(300), at(600), None]


async def test_expired_finds_pending_jobs_past_their_queue_ttl_and_leases_past_expiry(
    stores: Stores, alice: Account
) -> None:
    first = await stores.submit(alice, queue_expires_at=at(10))
    second = await stores.submit(alice, queue_expires_at=at(20))
    await stores.submit(alice, queue_expires_at=at(1000))
    leased = await stores.claim(await stores.submit(alice), until=60)
    assert [job.id for job in await stores.jobs.expired(JobStatus.PENDING, at(30), 10)] == [first.id, second.id]
    assert [job.id for job in await stores.jobs.expired(JobStatus.PENDING, at(30), 1)] == [first.id]
    assert await stores.jobs.expired(JobStatus.ASSIGNED, at(60), 10) == []
    assert [job.id for job in await stores.jobs.expired(JobStatus.ASSIGNED, at(61), 10)] == [leased.id]
    assert await stores.jobs.expired(JobStatus.CANCELING, at(61), 10) == []


async def test_events_are_numbered_per_account_and_read_back_in_order(stores: Stores, alice: Account) -> None:
    bob = await stores.account("bob")
    one = await stores.submit(alice)
    two = await stores.submit(alice)
    theirs = await stores.submit(bob)
    log = await stores.jobs.append_event(one, "log", at(3), {"lines": ["hello"]})
    await stores.move(one, Move.CANCEL_PENDING)
    assert log.seq == 3 and log.data == {"lines": ["hello"]}

    everything = await stores.jobs.events_since(alice.id, 0, None, 10)
    assert [(e.seq, e.job_id, e.kind) for e in everything] == [
        (1, one.id, "status"),
        (2, two.id, "status"),
        (3, one.id, "log"),
        (4, one.id, "status"),
    ]
    assert [e.seq for e in await stores.jobs.events_since(alice.id, 2, None, 10)] == [3, 4]
    assert [e.seq for e in await stores.jobs.events_since(alice.id, 0, one.id, 2)] == [1, 3]
    assert [(e.seq, e.job_id) for e in await stores.jobs.events_since(bob.id, 0, None, 10)] == [(1, theirs.id)]
    assert [e.seq for e in await stores.jobs.job_events(one.id, ["status"])] == [1, 4]
    assert [e.status for e in await stores.jobs.job_events(one.id, ["status", "log"])] == [
        "pending",
        "pending",
        "canceled",
    ]


async def test_statistics_and_estimates_come_from_completed_jobs(stores: Stores, alice: Account) -> None:
    for run_seconds, cost in ((30, 500), (10, 100)):
        job = await stores.claim(await stores.submit(alice))
        await stores.move(job, Start(started_at=at(100), lease_expires_at=at(1000)), "lease_1")
        done = Complete(at(100 + run_seconds), MinerReport("lease_1", ResultsState.NONE))
        billed = Billed(cost_units=cost, billed_seconds=run_seconds, billed_from=None, billed_until=None)
        assert await stores.jobs.transition(job.id, done, at(200), lease_id="lease_1", billed=billed) is not None
    await stores.submit(alice, model="other")
    stats = await stores.stats.job_stats(alice.id, None)
    assert stats.by_status == {"completed": 2, "pending": 1}
    assert stats.average_run_seconds == 20.0 and stats.spent_units == 600
    assert (await stores.stats.job_stats(alice.id, at(1))).by_status == {}
    assert await stores.jobs.average_billed_seconds("command", None, 10) == 20.0
    assert await stores.jobs.average_billed_seconds("command", "other", 10) is None


async def test_an_input_file_reads_back_once_recorded(stores: Stores, alice: Account) -> None:
    stored = StoredFile("file_1", alice.id, "clip.mp4", 1234, "e" * 64, "inputs/file_1", T0)
    assert (await stores.uploads.record_input_file(stored, 10**6)).stored
    assert await stores.jobs.get_input_file("file_1") == stored
    assert await stores.jobs.get_input_file("file_missing") is None


async def test_job_counts_follow_every_insert_and_move_and_give_the_list_totals(stores: Stores, alice: Account) -> None:
    """The maintained per-status counts equal a real count after inserts (one, a batch, an idempotent replay),
    moves (claim, requeue, cancel, fail, complete) and a move that did not apply; the list's totals use them."""
    bob = await stores.account("bob")
    for status in JobStatus:
        await stores.in_status(alice, status)
    await stores.in_status(bob, JobStatus.RUNNING)
    await stores.jobs.insert_jobs([job_row(alice) for _ in range(3)], T0)
    await stores.jobs.insert_job(job_row(alice, idempotency_key="k"), T0)
    await stores.jobs.insert_job(job_row(alice, idempotency_key="k"), T0)  # a replay: nothing new
    requeued = await stores.claim(await stores.submit(alice), lease_id="lease_9")
    await stores.move(requeued, Move.REQUEUE, "lease_9")
    pending = await stores.submit(alice)
    assert await stores.jobs.transition(pending.id, Start(at(2), at(60)), at(2), lease_id="none") is None  # refused

    listed = (await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 1000, None, with_total=False)).jobs
    real: dict[JobStatus, int] = {}
    for job in listed:
        real[job.status] = real.get(job.status, 0) + 1
    assert await stores.jobs.job_counts(alice.id) == real
    assert await stores.jobs.job_counts(bob.id) == {JobStatus.RUNNING: 1}
    assert (await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 2, None)).total == len(listed)
    for status in JobStatus:
        page = await stores.jobs.list_jobs(JobFilter(account_id=alice.id, statuses=[status]), 1, None)
        assert page.total == real.get(status, 0), status
    both = [JobStatus.PENDING, JobStatus.COMPLETED]
    page = await stores.jobs.list_jobs(JobFilter(account_id=alice.id, statuses=both), 1, None)
    assert page.total == real[JobStatus.PENDING] + real[JobStatus.COMPLETED]
    dated = JobFilter(account_id=alice.id, created_from=T0, created_to=at(1))
    assert (await stores.jobs.list_jobs(dated, 1, None)).total == len(listed)
    past_the_end = await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 1000, None)
    assert past_the_end.total == len(listed) and past_the_end.next_cursor is None
    oldest = past_the_end.jobs[-1]
    empty = await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 5, encode_cursor(oldest.created_at, oldest.id))
    assert empty.jobs == [] and empty.total == len(listed)  # an empty page still says how many match
