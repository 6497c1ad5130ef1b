"""Clients pay for the time the work ran, not for the coordinator's downtime: the charge runs from the miner's
reported start to its reported end, capped by the interval the coordinator observed (a report can shorten
it, never stretch it). SQLite and PostgreSQL (the `database_url` fixture runs both)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

import httpx

from aitbc.domain.clock import ManualClock
from aitbc.domain.job import Job, JobStatus
from aitbc.domain.plans import Role
from aitbc.protocol.miners import FailRequest, FinishRequest
from aitbc.wiring import Coordinator
from tests.helpers import job_request, principal, register_miner
from tests.support.protocol_miner import HttpMiner

A100_PER_SECOND = Decimal("0.10") / 3600
MINER_NUMBERS = itertools.count(1)


def charge(seconds: int) -> Decimal:
    return (A100_PER_SECOND * seconds).quantize(Decimal("0.000000001"))


class Running:
    """A job a miner has claimed and started at `started` (the coordinator's clock)."""

    def __init__(self, coordinator: Coordinator, clock: ManualClock) -> None:
        self.coordinator = coordinator
        self.clock = clock

    async def start(self) -> Running:
        self.client = await principal(self.coordinator, "alice", Role.CLIENT)
        self.owner = await principal(self.coordinator, "farm", Role.MINER)
        self.miner = await register_miner(
            self.coordinator,
            self.owner,
            name=f"miner-{next(MINER_NUMBERS)}",
            gpus=[{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}],
        )
        spec = job_request(requirements={"gpu_type": "a100"}, timeout_seconds=3600)
        self.job_id = (await self.coordinator.jobs.submit(self.client, spec)).job.id
        (assignment,) = await self.coordinator.claiming.claim(self.owner, self.miner, 1, 0)
        self.lease = assignment.lease_id
        await self.coordinator.running.start(self.owner, self.miner, self.job_id, self.lease)
        self.started = self.clock.now()
        return self

    def at(self, seconds: float) -> datetime:
        return self.started + timedelta(seconds=seconds)

    async def complete(self, **request: object) -> Job:
        await self.coordinator.finishing.complete(
            self.owner, self.miner, self.job_id, FinishRequest(lease_id=self.lease, **request)
        )
        return await self.coordinator.jobs.get(self.client, self.job_id)


async def available(coordinator: Coordinator, name: str) -> Decimal:
    account = await coordinator.accounts.account_named(name)
    return (await coordinator.billing.balance_of(account)).available


async def test_a_completion_that_arrives_after_an_outage_is_billed_the_reported_run(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    """The issue's case: a 4 s job whose `complete` reached the coordinator after a 20 s outage."""
    job = await Running(coordinator, clock).start()
    clock.advance(0.2)
    ran_from = clock.now()  # the miner starts the work once `start` is answered
    clock.advance(3.9)
    ran_until = clock.now()
    clock.advance(20.0)  # the coordinator is unreachable; the miner keeps retrying `complete`
    before = await available(coordinator, "alice")
    done = await job.complete(started_at=ran_from, ended_at=ran_until)

    assert done.status is JobStatus.COMPLETED
    assert done.completed_at == job.at(24.1), "the coordinator heard of the end 24.1 s after the start"
    assert (done.billed_seconds, done.cost) == (4, charge(4))  # ceil(3.9), not ceil(24.1)
    assert (done.billed_from, done.billed_until) == (ran_from, ran_until)
    assert (done.reported_started_at, done.reported_ended_at) == (ran_from, ran_until)
    assert await available(coordinator, "alice") - before == done.max_cost - charge(4)


async def test_without_reported_times_the_observed_interval_is_billed(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    """A miner that reports no times (an older one) is billed as before: what the coordinator saw."""
    job = await Running(coordinator, clock).start()
    clock.advance(24.1)
    done = await job.complete()
    assert (done.billed_seconds, done.cost) == (25, charge(25))
    assert (done.billed_from, done.billed_until) == (job.started, done.completed_at)
    assert (done.reported_started_at, done.reported_ended_at) == (None, None)


async def test_reported_times_outside_the_observed_window_are_capped(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    job = await Running(coordinator, clock).start()
    clock.advance(10)
    # A start before the coordinator saw the start, an end after it saw the end: both capped.
    done = await job.complete(started_at=job.at(-3600), ended_at=job.at(3600))
    assert (done.billed_seconds, done.cost) == (10, charge(10))
    assert (done.billed_from, done.billed_until) == (job.started, job.at(10))
    assert (done.reported_started_at, done.reported_ended_at) == (job.at(-3600), job.at(3600))


async def test_a_report_wholly_outside_the_window_bills_nothing(coordinator: Coordinator, clock: ManualClock) -> None:
    before = await Running(coordinator, clock).start()
    clock.advance(10)
    early = await before.complete(started_at=before.at(-100), ended_at=before.at(-50))
    assert (early.billed_seconds, early.cost) == (0, Decimal(0))
    assert early.billed_from == early.billed_until == before.started

    after = await Running(coordinator, clock).start()
    clock.advance(10)
    late = await after.complete(started_at=after.at(50), ended_at=after.at(100))
    assert (late.billed_seconds, late.cost) == (0, Decimal(0))
    assert late.billed_from == late.billed_until == after.at(10)


async def test_absurd_usage_reported_by_a_miner_is_not_billed(coordinator: Coordinator, clock: ManualClock) -> None:
    """Whatever a miner claims it used, the charge is the capped run time at the price list's rate."""
    job = await Running(coordinator, clock).start()
    clock.advance(3)
    before_client, before_miner = await available(coordinator, "alice"), await available(coordinator, "farm")
    done = await job.complete(
        started_at=job.at(0),
        ended_at=job.at(3),
        usage={"gpu_seconds": 10**12, "cost": "1000000", "gpus": 4096, "billed_seconds": 10**9},
    )
    assert (done.billed_seconds, done.cost) == (3, charge(3))
    assert await available(coordinator, "alice") - before_client == done.max_cost - charge(3)
    fee = (charge(3) * Decimal("0.10")).quantize(Decimal("0.000000001"))
    assert await available(coordinator, "farm") - before_miner == charge(3) - fee


async def test_a_failure_and_a_confirmed_cancel_are_billed_the_reported_run(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    failed = await Running(coordinator, clock).start()
    clock.advance(30)
    await coordinator.finishing.fail(
        failed.owner,
        failed.miner,
        failed.job_id,
        FailRequest(lease_id=failed.lease, reason="runtime_error", started_at=failed.at(1), ended_at=failed.at(3.5)),
    )
    job = await coordinator.jobs.get(failed.client, failed.job_id)
    assert (job.status, job.billed_seconds, job.cost) == (JobStatus.FAILED, 3, charge(3))

    canceled = await Running(coordinator, clock).start()
    clock.advance(2)
    await coordinator.jobs.cancel(canceled.client, canceled.job_id)
    stopped_at = clock.now()
    clock.advance(15)  # the miner's confirmation is late
    await coordinator.finishing.fail(
        canceled.owner,
        canceled.miner,
        canceled.job_id,
        FailRequest(lease_id=canceled.lease, started_at=canceled.at(0), ended_at=stopped_at),
    )
    job = await coordinator.jobs.get(canceled.client, canceled.job_id)
    assert (job.status, job.billed_seconds, job.cost) == (JobStatus.CANCELED, 2, charge(2))


async def test_reported_times_must_be_aware_and_in_order(api: tuple[httpx.AsyncClient, Coordinator]) -> None:
    """Refused with a 422 that says why, and the job is left running."""
    http, coordinator = api
    client_key = (await coordinator.accounts.create_key("alice", Role.CLIENT)).secret
    miner = HttpMiner(http, (await coordinator.accounts.create_key("farm", Role.MINER)).secret)
    await miner.register()
    submitted = await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers={"X-Api-Key": client_key})
    job_id = submitted.json()["job_id"]
    (claimed,) = await miner.claim()
    lease = claimed["lease_id"]
    assert (await miner.call("start", job_id, {"lease_id": lease})).status_code == 200
    for times, complaint in (
        ({"started_at": "2026-01-01T00:00:00", "ended_at": "2026-01-01T00:00:05Z"}, "timezone"),
        ({"started_at": "2026-01-01T00:00:05Z", "ended_at": "2026-01-01T00:00:00Z"}, "before started_at"),
        ({"started_at": "2026-01-01T00:00:00Z", "ended_at": "0001-01-01T00:00:00+00:02"}, "1970"),
        ({"started_at": "2026-01-01T00:00:00Z", "ended_at": "9999-12-31T23:59:59-01:00"}, "9000"),
    ):
        answer = await miner.call("complete", job_id, {"lease_id": lease, **times})
        assert answer.status_code == 422 and complaint in answer.text, answer.text
    status = (await http.get(f"/v1/jobs/{job_id}", headers={"X-Api-Key": client_key})).json()
    assert status["status"] == "running" and status["cost"] is None
