"""A miner that misses its heartbeats for `miner_lost_after_seconds` is lost: the reaper hands its jobs back
then, not at the end of their leases, on SQLite and PostgreSQL, with the injected clock. A coordinator that
was down does not count its outage against the miners, and a lost miner stops counting as live at once."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from aitbc.cli.main import app as cli_app
from aitbc.cli.serve_command import resolve_miner_lost_after
from aitbc.domain.clock import ManualClock
from aitbc.domain.errors import Conflict, NotFound
from aitbc.domain.job import FailureReason, JobStatus
from aitbc.domain.manifest import public_key_text
from aitbc.domain.plans import Role
from aitbc.protocol.miners import FinishRequest, RegisterRequest
from aitbc.settings import Settings
from aitbc.wiring import Coordinator, open_coordinator
from tests.helpers import job_request, principal, register_miner


async def started(coordinator: Coordinator, clock: ManualClock) -> None:
    """The reaper's start, and the lease period after it during which nobody is lost."""
    await coordinator.reaper.grace_after_start()
    clock.advance(coordinator.settings.lease_seconds)


async def running_job(coordinator: Coordinator, miner_name: str = "m1") -> tuple[str, str, str]:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner, miner_name)
    job = (await coordinator.jobs.submit(client, job_request())).job
    (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    await coordinator.running.start(owner, miner, job.id, assignment.lease_id)
    return job.id, miner, assignment.lease_id


def test_miners_heartbeat_three_times_per_lost_window_and_four_per_lease() -> None:
    assert Settings().heartbeat_seconds == 5  # 60 s leases, lost after 15 s
    assert Settings(lease_seconds=60, miner_lost_after_seconds=3).heartbeat_seconds == 1
    assert Settings(lease_seconds=8, miner_lost_after_seconds=8).heartbeat_seconds == 2
    assert Settings(lease_seconds=600, miner_lost_after_seconds=60).heartbeat_seconds == 20
    assert Settings(lease_seconds=3, miner_lost_after_seconds=3).heartbeat_seconds == 1


async def test_a_miner_is_told_the_heartbeat_of_the_lost_window(coordinator: Coordinator) -> None:
    owner = await principal(coordinator, "farm", Role.MINER)
    answer = await coordinator.miners.register(
        owner,
        RegisterRequest(name="m1", runtimes=["command"], public_key=public_key_text(Ed25519PrivateKey.generate())),
    )
    assert (answer.lease_seconds, answer.heartbeat_seconds) == (60, 5)


async def test_a_silent_miner_loses_its_job_long_before_the_lease_ends(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    await started(coordinator, clock)
    lost_after = coordinator.settings.miner_lost_after_seconds
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    job_id, miner, lease = await running_job(coordinator)
    for _ in range(6):  # 30 s of heartbeats: alive, whatever the database lags
        clock.advance(coordinator.settings.heartbeat_seconds)
        (state,) = await coordinator.miners.heartbeat(owner, miner, [lease])
        assert state.active
        assert (await coordinator.reaper.run_once()).total == 0
    held = await coordinator.jobs.get(client, job_id)
    assert held.lease_expires_at is not None

    clock.advance(lost_after)  # silent for exactly the window: not yet lost
    assert (await coordinator.reaper.run_once()).total == 0
    clock.advance(1)
    report = await coordinator.reaper.run_once()
    assert (report.requeued, report.silent_miners, report.total) == (1, 1, 1)
    requeued = await coordinator.jobs.get(client, job_id)
    assert clock.now() < held.lease_expires_at  # its lease had 44 s left
    assert requeued.status is JobStatus.PENDING and requeued.attempt == 1
    assert requeued.miner_id is None and requeued.lease_id is None
    assert requeued.error == f"miner {miner} was lost (missed its heartbeats for {lost_after} s)"

    # The lost miner comes back too late: its lease is gone, its result refused, its heartbeat says stop.
    (state,) = await coordinator.miners.heartbeat(owner, miner, [lease])
    assert state.cancel and not state.active
    with pytest.raises(NotFound):  # the job is no longer this miner's
        await coordinator.finishing.complete(owner, miner, job_id, FinishRequest(lease_id=lease))
    other = await register_miner(coordinator, owner, "m2")
    (second,) = await coordinator.claiming.claim(owner, other, 1, 0)
    assert (second.job_id, second.attempt) == (job_id, 2)
    done = await coordinator.finishing.complete(owner, other, job_id, FinishRequest(lease_id=second.lease_id))
    assert done.status is JobStatus.COMPLETED
    assert (await coordinator.jobs.get(client, job_id)).miner_id == other
    assert (await coordinator.reaper.run_once()).total == 0


async def test_a_miner_this_replica_heard_is_not_lost_while_the_database_lags(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    await started(coordinator, clock)
    owner = await principal(coordinator, "farm", Role.MINER)
    client = await principal(coordinator, "alice", Role.CLIENT)
    job_id, miner, lease = await running_job(coordinator)  # the claim wrote last_seen_at
    clock.advance(4)
    await coordinator.miners.heartbeat(owner, miner, [lease])  # within a third of the window: memory only
    clock.advance(12)
    since = clock.now() - timedelta(seconds=coordinator.settings.miner_lost_after_seconds)
    candidates = await coordinator.job_store.held_by_lost_miners(since, 10)
    assert [job.id for job in candidates] == [job_id]  # the database alone would take it for lost
    assert (await coordinator.reaper.run_once()).total == 0
    assert (await coordinator.jobs.get(client, job_id)).status is JobStatus.RUNNING
    clock.advance(4)  # now 16 s after the heartbeat the view has
    assert (await coordinator.reaper.run_once()).requeued == 1


async def test_a_canceling_job_of_a_silent_miner_is_force_canceled(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    await started(coordinator, clock)
    lost_after = coordinator.settings.miner_lost_after_seconds
    client = await principal(coordinator, "alice", Role.CLIENT)
    job_id, _, lease = await running_job(coordinator)
    clock.advance(lost_after - 1)
    assert (await coordinator.jobs.cancel(client, job_id)).outcome == "canceling"
    clock.advance(2)  # lost; the cancel's own bound (cancel_grace_seconds) is still 8 s away
    report = await coordinator.reaper.run_once()
    assert (report.force_canceled, report.silent_miners) == (1, 1)
    canceled = await coordinator.jobs.get(client, job_id)
    assert canceled.status is JobStatus.CANCELED and canceled.lease_id is None
    assert canceled.error is not None and f"missed its heartbeats for {lost_after} s" in canceled.error
    owner = await principal(coordinator, "farm", Role.MINER)
    with pytest.raises(Conflict):
        await coordinator.finishing.complete(owner, canceled.miner_id or "", job_id, FinishRequest(lease_id=lease))


async def test_the_last_attempt_of_a_silent_miner_fails_as_miner_lost(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    await started(coordinator, clock)
    lost_after = coordinator.settings.miner_lost_after_seconds
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    job = (await coordinator.jobs.submit(client, job_request())).job
    for attempt in range(1, job.max_attempts + 1):
        miner = await register_miner(coordinator, owner, f"m{attempt}")
        (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
        assert assignment.attempt == attempt
        clock.advance(lost_after + 1)
        report = await coordinator.reaper.run_once()
        assert (report.requeued, report.lost) == ((1, 0) if attempt < job.max_attempts else (0, 1))
    failed = await coordinator.jobs.get(client, job.id)
    assert failed.status is JobStatus.FAILED and failed.failure_reason is FailureReason.MINER_LOST
    assert failed.error == (
        f"the miner was lost on each of {job.max_attempts} attempts (last: missed its heartbeats for {lost_after} s)"
    )


async def test_no_miner_is_lost_until_a_lease_period_after_the_start(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    """The coordinator was down for 100 s: its miners' `last_seen_at` are that old. The one that reconnects
    keeps its job; the one that does not loses it when the period ends."""
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    back, miner, lease = await running_job(coordinator, "back")
    gone, _, _ = await running_job(coordinator, "gone")
    assert (await coordinator.reaper.run_once()).total == 0
    clock.advance(100)  # the outage; a reaper that was not started only looks at leases
    await coordinator.reaper.grace_after_start()
    assert (await coordinator.reaper.run_once()).total == 0
    clock.advance(coordinator.settings.lease_seconds - 1)
    assert (await coordinator.reaper.run_once()).total == 0
    await coordinator.miners.heartbeat(owner, miner, [lease])  # "back" reconnects; "gone" never does
    clock.advance(1)
    report = await coordinator.reaper.run_once()
    assert (report.requeued, report.silent_miners) == (1, 1)
    assert (await coordinator.jobs.get(client, back)).status is JobStatus.RUNNING
    requeued = await coordinator.jobs.get(client, gone)
    assert requeued.status is JobStatus.PENDING and "missed its heartbeats" in (requeued.error or "")


async def test_a_lost_miner_stops_counting_as_live_at_the_same_moment(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    lost_after = coordinator.settings.miner_lost_after_seconds
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    await register_miner(coordinator, owner, "cpu")
    waits = job_request(requirements={"gpu_type": "a100"}, queue_timeout_seconds=600)  # no A100: it may wait
    job = (await coordinator.jobs.submit(client, waits)).job
    assert (await coordinator.monitor.miners()).live_miners == 1
    clock.advance(lost_after)
    assert await coordinator.jobs.waiting_for(job) == "no connected miner can run it (needs 1x a100)"
    clock.advance(1)
    assert await coordinator.jobs.waiting_for(job) == "no miner is connected"
    assert (await coordinator.monitor.miners()).live_miners == 0


async def test_the_held_heartbeat_never_outlasts_the_heartbeat_period(settings: Settings) -> None:
    """Whatever wait a miner asks, the coordinator answers within its heartbeat period (1 s here): the next
    heartbeat is how it knows the miner is there. The test's bound only guards against a hang."""
    coordinator = await open_coordinator(replace(settings, miner_lost_after_seconds=3))
    try:
        owner = await principal(coordinator, "farm", Role.MINER)
        miner = await register_miner(coordinator, owner)
        client = await principal(coordinator, "alice", Role.CLIENT)
        await coordinator.jobs.submit(client, job_request())
        (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
        held = coordinator.miners.heartbeat(owner, miner, [assignment.lease_id], wait_seconds=300)
        (state,) = await asyncio.wait_for(held, timeout=60)
        assert state.active and not state.cancel
    finally:
        await coordinator.close()


def test_serve_takes_a_lost_window_shorter_than_the_lease() -> None:
    assert resolve_miner_lost_after(None, 60) == 15
    assert resolve_miner_lost_after(None, 3) == 3  # a lease that short: a miner is lost when its lease ends
    assert resolve_miner_lost_after(5, 60) == 5
    runner = CliRunner()
    zero = runner.invoke(cli_app, ["serve", "--miner-lost-after", "0"], env={"COLUMNS": "200"})
    assert zero.exit_code == 2 and "above zero" in zero.output, zero.output
    outlasts = runner.invoke(
        cli_app, ["serve", "--lease-seconds", "10", "--miner-lost-after", "10"], env={"COLUMNS": "200"}
    )
    assert outlasts.exit_code == 2 and "--lease-seconds longer than 10" in outlasts.output, outlasts.output
    helped = runner.invoke(cli_app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert helped.exit_code == 0 and "--miner-lost-after" in helped.output and "heartbeats" in helped.output
