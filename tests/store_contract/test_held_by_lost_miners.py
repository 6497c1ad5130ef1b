"""The store contract of the reaper's query of lost miners' jobs (`held_by_lost_miners`), on SQLite and
PostgreSQL: the assigned, running and canceling jobs of miners whose `last_seen_at` is before a moment."""

from __future__ import annotations

from aitbc.domain.accounts import Account
from aitbc.domain.job import JobStatus
from aitbc.domain.matching import Capabilities
from aitbc.domain.moves import Requeue
from aitbc.domain.transitions import Move
from aitbc.services.reaper import EPSILON as READ_GUARD
from tests.store_contract.conftest import Stores, at

CPU = Capabilities(runtimes=frozenset({"command"}))


async def test_the_jobs_held_by_silent_miners_are_found_longest_silent_first(stores: Stores, alice: Account) -> None:
    await stores.miners.register("miner_live", alice.id, "live", CPU, 4, "key-1", at(100))
    await stores.miners.register("miner_quiet", alice.id, "quiet", CPU, 4, "key-2", at(20))
    await stores.miners.register("miner_silent", alice.id, "silent", CPU, 4, "key-3", at(10))
    assigned = await stores.claim(await stores.submit(alice), "lease_a", "miner_silent")
    running = await stores.move(
        await stores.claim(await stores.submit(alice), "lease_r", "miner_silent"), Move.START, "lease_r"
    )
    canceling = await stores.claim(await stores.submit(alice), "lease_c", "miner_quiet")
    canceling = await stores.move(canceling, Move.REQUEST_CANCEL, "lease_c")
    finished = await stores.claim(await stores.submit(alice), "lease_f", "miner_silent")
    await stores.move(finished, Move.COMPLETE, "lease_f")
    await stores.claim(await stores.submit(alice), "lease_l", "miner_live")
    await stores.submit(alice)  # pending: nobody holds it

    assert (assigned.status, running.status, canceling.status) == (
        JobStatus.ASSIGNED,
        JobStatus.RUNNING,
        JobStatus.CANCELING,
    )
    found = await stores.jobs.held_by_lost_miners(at(50), 10)
    silent_first = sorted([assigned.id, running.id])
    assert [job.id for job in found] == [*silent_first, canceling.id]
    assert {job.miner_id for job in found} == {"miner_silent", "miner_quiet"}
    assert [job.id for job in await stores.jobs.held_by_lost_miners(at(50), 1)] == silent_first[:1]
    assert [job.id for job in await stores.jobs.held_by_lost_miners(at(15), 10)] == silent_first
    assert await stores.jobs.held_by_lost_miners(at(10), 10) == []  # heard from at that very moment: not lost

    await stores.miners.touch("miner_silent", at(60))
    assert [job.id for job in await stores.jobs.held_by_lost_miners(at(50), 10)] == [canceling.id]


async def test_the_reapers_guard_lets_a_heartbeat_after_its_read_win(stores: Stores, alice: Account) -> None:
    """The reaper moves a silent miner's job only while its lease is as it read it (`lease_expired_by` just past
    the expiry it read): a heartbeat in between extends the lease, and the move changes nothing."""
    kept = await stores.move(await stores.claim(await stores.submit(alice), "lease_k"), Move.START, "lease_k")
    taken = await stores.move(await stores.claim(await stores.submit(alice), "lease_t"), Move.START, "lease_t")
    assert kept.lease_expires_at is not None and taken.lease_expires_at is not None
    await stores.jobs.extend_leases("miner_1", ["lease_k"], at(90))
    lost = Requeue(error="miner miner_1 was lost (missed its heartbeats for 15 s)")
    after_read = kept.lease_expires_at + READ_GUARD
    assert await stores.jobs.transition(kept.id, lost, at(30), lease_id="lease_k", lease_expired_by=after_read) is None
    still = await stores.jobs.get_job(kept.id)
    assert still is not None and still.status is JobStatus.RUNNING
    as_read = taken.lease_expires_at + READ_GUARD
    changed = await stores.jobs.transition(taken.id, lost, at(30), lease_id="lease_t", lease_expired_by=as_read)
    assert changed is not None and changed.job.status is JobStatus.PENDING
