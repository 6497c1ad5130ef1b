"""`JobStore.transition`: every move of the transition table is a compare-and-set. It applies once from each of
its source statuses and never from another; a leased move needs the job's current lease; of two racers exactly
one wins; what rides on the move (event, result, ledger entries) is stored with it or not at all."""

from __future__ import annotations

import asyncio

from aitbc.domain.accounts import Account
from aitbc.domain.job import FailureReason, JobStatus
from aitbc.domain.moves import Complete, Fail, ForceCancel, MinerReport, Requeue
from aitbc.domain.package import ResultsState
from aitbc.domain.transitions import TRANSITIONS, Move
from aitbc.storage.interfaces import LedgerEntry
from tests.store_contract.conftest import Stores, at, result_file, stored_result, write_for


async def test_every_move_applies_once_from_each_source_status_and_never_from_another(
    stores: Stores, alice: Account
) -> None:
    for status in JobStatus:
        job = await stores.in_status(alice, status)
        for move, rule in TRANSITIONS.items():
            if status not in rule.sources:
                assert (
                    await stores.jobs.transition(job.id, write_for(move, job), at(10), lease_id=job.lease_id) is None
                ), (
                    move,
                    status,
                )
        assert await stores.jobs.get_job(job.id) == job

    for move, rule in TRANSITIONS.items():
        for status in rule.sources:
            job = await stores.in_status(alice, status)
            first = await stores.jobs.transition(job.id, write_for(move, job), at(10), lease_id=job.lease_id)
            assert first is not None, (move, status)
            assert first.job.status is rule.target and first.job.updated_at == at(10)
            assert (first.event.kind, first.event.status, first.event.data["move"]) == ("status", rule.target, move)
            again = write_for(move, job, when=11)
            assert await stores.jobs.transition(job.id, again, at(11), lease_id=job.lease_id) is None, (move, status)


async def test_a_leased_move_needs_the_jobs_current_lease(stores: Stores, alice: Account) -> None:
    for move, rule in TRANSITIONS.items():
        if not rule.needs_lease:
            continue
        leased = (JobStatus.ASSIGNED, JobStatus.RUNNING, JobStatus.CANCELING)
        source = next(status for status in leased if status in rule.sources)
        job = await stores.in_status(alice, source, lease_id="lease_right")
        write = write_for(move, job)
        assert await stores.jobs.transition(job.id, write, at(10), lease_id="lease_wrong") is None, move
        assert await stores.jobs.transition(job.id, write, at(10)) is None, move
        changed = await stores.jobs.transition(job.id, write, at(10), lease_id="lease_right")
        assert changed is not None and changed.job.status is rule.target, move


async def test_a_finished_job_is_finished_once(stores: Stores, alice: Account) -> None:
    job = await stores.in_status(alice, JobStatus.COMPLETED)
    for move in (Move.COMPLETE, Move.FAIL, Move.REQUEUE, Move.CONFIRM_CANCEL, Move.REQUEST_CANCEL, Move.FORCE_CANCEL):
        assert await stores.jobs.transition(job.id, write_for(move, job), at(20), lease_id="lease_1") is None, move
    stored = await stores.jobs.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.COMPLETED


async def test_an_old_lease_cannot_finish_a_job_claimed_again(stores: Stores, alice: Account) -> None:
    job = await stores.claim(await stores.submit(alice), "lease_1")
    job = await stores.move(job, Move.REQUEUE, "lease_1")
    job = await stores.claim(job, "lease_2", miner_id="miner_2")
    assert job.attempt == 2 and job.lease_id == "lease_2"
    done = write_for(Move.COMPLETE, job, when=5)
    assert await stores.jobs.transition(job.id, done, at(5), lease_id="lease_1") is None
    assert await stores.jobs.transition(job.id, done, at(5), lease_id="lease_2") is not None


async def test_of_two_racers_exactly_one_wins(stores: Stores, alice: Account) -> None:
    same = await stores.claim(await stores.submit(alice))
    twice = await asyncio.gather(
        *(stores.jobs.transition(same.id, write_for(Move.COMPLETE, same), at(5), lease_id="lease_1") for _ in range(2))
    )
    assert sum(changed is not None for changed in twice) == 1

    contested = await stores.claim(await stores.submit(alice))
    complete, cancel = await asyncio.gather(
        stores.jobs.transition(contested.id, write_for(Move.COMPLETE, contested), at(5), lease_id="lease_1"),
        stores.jobs.transition(contested.id, write_for(Move.REQUEST_CANCEL, contested), at(5)),
    )
    assert (complete is None) != (cancel is None)
    stored = await stores.jobs.get_job(contested.id)
    assert stored is not None
    assert stored.status is (JobStatus.COMPLETED if complete is not None else JobStatus.CANCELING)


async def test_ledger_entries_ride_on_the_move_that_wins_and_on_no_other(stores: Stores, alice: Account) -> None:
    job = await stores.claim(await stores.submit(alice))
    payouts = [[LedgerEntry(alice.id, "release", 100, job.id, f"racer {n}")] for n in range(3)]
    changed = await asyncio.gather(
        *(
            stores.jobs.transition(job.id, write_for(Move.COMPLETE, job), at(5), lease_id="lease_1", ledger=p)
            for p in payouts
        )
    )
    assert sum(c is not None for c in changed) == 1
    assert [e.amount_units for e in await stores.ledger.entries(alice.id, None, None, 10, 0)] == [100]
    assert await stores.ledger.balance_units(alice.id) == 100

    failed = write_for(Move.FAIL, job, when=6)
    lost = await stores.jobs.transition(job.id, failed, at(6), lease_id="lease_1", ledger=payouts[0])
    assert lost is None and await stores.ledger.balance_units(alice.id) == 100


async def test_changes_and_the_attempt_are_stored_with_the_move(stores: Stores, alice: Account) -> None:
    job = await stores.submit(alice)
    assert job.attempt == 0
    claimed = await stores.claim(job, "lease_1", until=60)
    assert (claimed.attempt, claimed.miner_id, claimed.lease_id) == (1, "miner_1", "lease_1")
    assert claimed.lease_expires_at == at(60) and claimed.assigned_at == at(1)
    changed = await stores.jobs.transition(
        job.id,
        Fail(at(9), FailureReason.RUNTIME_ERROR, "exit 3", MinerReport("lease_1", ResultsState.NONE, exit_code=3)),
        at(9),
        lease_id="lease_1",
        event_data={"reason": "runtime_error"},
    )
    assert changed is not None
    assert (changed.job.error, changed.job.exit_code, changed.job.completed_at) == ("exit 3", 3, at(9))
    assert changed.event.data == {"move": "fail", "reason": "runtime_error"}
    assert await stores.jobs.get_job(job.id) == changed.job


async def test_a_lease_extended_meanwhile_is_not_expired(stores: Stores, alice: Account) -> None:
    job = await stores.claim(await stores.submit(alice), until=60)
    lost = Requeue("the miner was lost")
    early = await stores.jobs.transition(job.id, lost, at(70), lease_id="lease_1", lease_expired_by=at(30))
    assert early is None  # the reaper saw an expired lease, but the miner extended it before the reaper moved
    late = await stores.jobs.transition(job.id, lost, at(70), lease_id="lease_1", lease_expired_by=at(61))
    assert late is not None and late.job.status is JobStatus.PENDING


async def test_the_result_is_stored_with_the_move_and_unlisted_files_are_let_go(stores: Stores, alice: Account) -> None:
    job = await stores.claim(await stores.submit(alice))
    for path in ("kept.txt", "extra.txt"):
        assert (await stores.uploads.record_result_file(result_file(job.id, "lease_1", path), at(2), 1000)).stored
    result = stored_result(job.id, "lease_1", ("kept.txt",))
    done = Complete(at(10), MinerReport("lease_1", ResultsState.AVAILABLE))
    changed = await stores.jobs.transition(job.id, done, at(10), lease_id="lease_1", result=result)
    assert changed is not None and changed.job.results_state == "available"
    assert await stores.jobs.get_result(job.id) == result
    assert [f.path for f in await stores.jobs.result_files(job.id, "lease_1")] == ["kept.txt"]
    assert await stores.jobs.get_result("job_missing") is None


async def test_each_move_writes_what_its_write_set_says_and_what_the_move_implies(
    stores: Stores, alice: Account
) -> None:
    """The store turns each write-set into columns: a requeue forgets the miner, its lease and its progress;
    a forced cancel revokes the lease; a completion is at 100 % with the miner's report kept."""
    job = await stores.move(await stores.claim(await stores.submit(alice)), Move.START, "lease_1")
    requeued = await stores.move(job, Requeue("miner lost"), "lease_1")
    assert (requeued.miner_id, requeued.lease_id, requeued.lease_expires_at, requeued.started_at) == (None,) * 4
    assert (requeued.progress, requeued.error, requeued.attempt) == (0, "miner lost", 1)

    canceling = await stores.move(await stores.claim(requeued, "lease_2"), Move.REQUEST_CANCEL, "lease_2")
    assert canceling.cancel_requested_at == at(1) and canceling.lease_id == "lease_2"
    forced = await stores.move(canceling, ForceCancel(at(5), "no answer"))
    assert (forced.status, forced.lease_id, forced.lease_expires_at) == (JobStatus.CANCELED, None, None)
    assert (forced.completed_at, forced.error, forced.miner_id) == (at(5), "no answer", "miner_1")

    done = await stores.claim(await stores.submit(alice), "lease_3")
    report = MinerReport("lease_3", ResultsState.NONE, exit_code=0, started_at=at(2), ended_at=at(4))
    completed = await stores.move(done, Complete(at(6), report), "lease_3")
    assert (completed.progress, completed.exit_code, completed.result_lease_id) == (100, 0, "lease_3")
    assert (completed.reported_started_at, completed.reported_ended_at) == (at(2), at(4))
