"""The store contract of pinned jobs (`--agent-id`), miners' regions and the marketplace's counts, on SQLite and
PostgreSQL."""

from __future__ import annotations

from aitbc.domain.accounts import Account
from aitbc.domain.job import Priority, Requirements
from aitbc.domain.matching import Capabilities, Gpu
from aitbc.domain.transitions import Move
from tests.store_contract.conftest import T0, Stores, at

CPU = Capabilities(runtimes=frozenset({"command"}))
TWO_GPUS = Capabilities(runtimes=frozenset({"command"}), gpus=(Gpu("a100", 80), Gpu("a100", 80)))


def pinned(miner_id: str) -> Requirements:
    return Requirements(miner_id=miner_id)


async def test_the_queue_passes_over_jobs_pinned_to_other_miners(stores: Stores, alice: Account) -> None:
    theirs = await stores.submit(alice, created_at=at(0), priority=Priority.URGENT, requirements=pinned("miner_b"))
    mine = await stores.submit(alice, created_at=at(1), priority=Priority.HIGH, requirements=pinned("miner_a"))
    anyone = await stores.submit(alice, created_at=at(2))
    assert [job.id for job in await stores.jobs.queued(["command"], 10, "miner_a")] == [mine.id, anyone.id]
    assert [job.id for job in await stores.jobs.queued(["command"], 10, "miner_b")] == [theirs.id, anyone.id]
    assert [job.id for job in await stores.jobs.queued(["command"], 10)] == [anyone.id]
    assert [job.id for job in await stores.jobs.queued(["command"], 1, "miner_a")] == [mine.id]
    assert mine.spec.requirements.miner_id == "miner_a"
    stored = await stores.jobs.get_job(mine.id)
    assert stored is not None and stored.spec.requirements == pinned("miner_a")


async def test_pinned_jobs_of_lost_or_unknown_miners_are_found(stores: Stores, alice: Account) -> None:
    await stores.miners.register("miner_live", alice.id, "live", CPU, 1, "key-1", at(100))
    await stores.miners.register("miner_lost", alice.id, "lost", CPU, 1, "key-2", at(10))
    on_live = await stores.submit(alice, created_at=at(1), requirements=pinned("miner_live"))
    on_lost = await stores.submit(alice, created_at=at(2), requirements=pinned("miner_lost"))
    on_nobody = await stores.submit(alice, created_at=at(3), requirements=pinned("miner_gone"))
    finished = await stores.submit(alice, created_at=at(4), requirements=pinned("miner_lost"))
    await stores.move(finished, Move.CANCEL_PENDING)
    await stores.submit(alice, created_at=at(5))
    assert [job.id for job in await stores.jobs.pinned_to_lost_miners(at(50), 10)] == [on_lost.id, on_nobody.id]
    assert [job.id for job in await stores.jobs.pinned_to_lost_miners(at(50), 1)] == [on_lost.id]
    assert [job.id for job in await stores.jobs.pinned_to_lost_miners(at(5), 10)] == [on_nobody.id]
    assert [job.id for job in await stores.jobs.pinned_pending("miner_live", 10)] == [on_live.id]
    assert await stores.jobs.pinned_pending("miner_other", 10) == []


async def test_a_miner_keeps_its_region_and_is_found_by_name_across_accounts(stores: Stores, alice: Account) -> None:
    bob = await stores.account("bob")
    first = await stores.miners.register("miner_1", alice.id, "gpu-1", CPU, 1, "key-1", T0, region="us-west")
    assert first.region == "us-west"
    again = await stores.miners.register("miner_x", alice.id, "gpu-1", CPU, 1, "key-1", at(5), region="eu-central")
    assert (again.id, again.region) == ("miner_1", "eu-central")
    other = await stores.miners.register("miner_2", bob.id, "gpu-1", CPU, 1, "key-2", T0)
    assert other.region is None
    assert sorted(m.id for m in await stores.miners.miners_named("gpu-1")) == ["miner_1", "miner_2"]
    assert await stores.miners.miners_named("nobody") == []
    assert [m.region for m in await stores.miners.seen_since(at(1))] == ["eu-central"]


async def test_demand_groups_pending_jobs_by_what_they_ask_for(stores: Stores, alice: Account) -> None:
    gpu = Requirements(gpu_type="rtx4090")
    for _ in range(3):
        await stores.submit(alice, requirements=gpu)
    await stores.submit(alice, type="text-generation", model="gpt2")
    await stores.submit(alice, requirements=pinned("miner_a"))
    await stores.claim(await stores.submit(alice, requirements=gpu))  # not pending: not demand
    demand, complete = await stores.market.pending_demand(100)
    assert complete
    counted = {(d.spec.type, d.spec.model, d.spec.requirements): d.count for d in demand}
    assert counted == {
        ("command", None, gpu): 3,
        ("text-generation", "gpt2", Requirements()): 1,
        ("command", None, pinned("miner_a")): 1,
    }
    partial, complete = await stores.market.pending_demand(2)
    assert not complete and sum(d.count for d in partial) == 3  # the first `limit` and one to tell it is more


async def test_loads_count_held_jobs_and_their_gpus_per_miner(stores: Stores, alice: Account) -> None:
    await stores.claim(await stores.submit(alice, requirements=Requirements(gpu_count=2)), "lease_1", "miner_a")
    running = await stores.claim(await stores.submit(alice), "lease_2", "miner_a")
    await stores.move(running, Move.START, "lease_2")
    canceling = await stores.claim(await stores.submit(alice), "lease_3", "miner_b")
    await stores.move(canceling, Move.REQUEST_CANCEL)
    done = await stores.claim(await stores.submit(alice), "lease_4", "miner_c")
    await stores.move(done, Move.COMPLETE, "lease_4")
    await stores.submit(alice)
    loads = await stores.market.miner_loads()
    assert {miner: (load.jobs, load.gpus) for miner, load in loads.items()} == {"miner_a": (2, 3), "miner_b": (1, 1)}
