"""A submit's run-time estimate comes from the last completed jobs of its kind, read from the store at most once
per few seconds per kind (not once per submit); a kind's estimate moves once that age has passed."""

from __future__ import annotations

import asyncio

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.protocol.miners import FinishRequest
from aitbc.services.run_estimates import RunEstimates
from aitbc.wiring import Coordinator
from tests.helpers import job_request, principal, register_miner


async def complete_one(coordinator: Coordinator, clock: ManualClock, seconds: float, miner: str = "") -> str:
    """A command job of alice's, run by farm's miner (registered unless given) for `seconds`; the miner's id."""
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = miner or await register_miner(coordinator, owner)
    job = (await coordinator.jobs.submit(client, job_request())).job
    (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    await coordinator.running.start(owner, miner, job.id, assignment.lease_id)
    clock.advance(seconds)
    await coordinator.finishing.complete(owner, miner, job.id, FinishRequest(lease_id=assignment.lease_id))
    return miner


async def test_an_estimate_is_read_once_per_max_age_per_kind(coordinator: Coordinator, clock: ManualClock) -> None:
    moment = [100.0]
    estimates = RunEstimates(coordinator.job_store, max_age_seconds=5.0, monotonic=lambda: moment[0])
    assert await estimates.typical_seconds("command", None) is None  # nothing completed yet
    miner = await complete_one(coordinator, clock, 10)
    moment[0] += 4.9
    assert await estimates.typical_seconds("command", None) is None  # still the figure read 4.9 s ago
    assert await estimates.typical_seconds("command", "other") is None  # each kind its own
    moment[0] += 0.2
    assert await estimates.typical_seconds("command", None) == 10.0
    await complete_one(coordinator, clock, 20, miner)
    assert await estimates.typical_seconds("command", None) == 10.0
    moment[0] += 5
    assert await estimates.typical_seconds("command", None) == 15.0


async def test_the_kinds_remembered_are_bounded(coordinator: Coordinator) -> None:
    estimates = RunEstimates(coordinator.job_store, max_kinds=3)
    for model in ("a", "b", "c", "d", "a"):
        await estimates.typical_seconds("text-generation", model)
    assert len(estimates._known) == 3


async def test_a_submit_shows_the_typical_run_time_of_its_kind(coordinator: Coordinator, clock: ManualClock) -> None:
    await complete_one(coordinator, clock, 12)
    coordinator.jobs.estimates = RunEstimates(coordinator.job_store)  # nothing remembered from before the run
    client = await principal(coordinator, "alice", Role.CLIENT)
    job = (await coordinator.jobs.submit(client, job_request(timeout_seconds=600))).job
    assert job.estimated_time_seconds == 12


async def test_a_burst_of_submits_reads_the_estimate_once(coordinator: Coordinator, clock: ManualClock) -> None:
    """Concurrent askers of a kind share one read (a burst at start-up used to run one query each), and while a
    refresh is in flight the figure it replaces is answered at once."""
    moment = [100.0]
    reads: list[str] = []
    store = coordinator.job_store

    class Counting:
        async def average_billed_seconds(self, job_type: str, model: str | None, sample: int) -> float | None:
            reads.append(job_type)
            await asyncio.sleep(0.05)  # the query in flight while the others ask
            return await store.average_billed_seconds(job_type, model, sample)

    estimates = RunEstimates(Counting(), max_age_seconds=5.0, monotonic=lambda: moment[0])  # type: ignore[arg-type]
    answers = await asyncio.gather(*(estimates.typical_seconds("command", None) for _ in range(20)))
    assert answers == [None] * 20 and reads == ["command"]
    await complete_one(coordinator, clock, 10)
    moment[0] += 6
    refreshing = asyncio.ensure_future(estimates.typical_seconds("command", None))
    await asyncio.sleep(0)  # the refresh has started
    assert await estimates.typical_seconds("command", None) is None  # the stale figure, without waiting
    assert await refreshing == 10.0 and reads == ["command", "command"]
    assert await estimates.typical_seconds("command", None) == 10.0
