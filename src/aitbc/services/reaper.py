"""The reaper: lost leases go back to the queue (or fail as `miner_lost`), unanswered cancels are forced,
jobs nobody takes before their queue TTL fail as `expired`, and jobs pinned to a miner that is lost fail as
`no_miner` (no other miner may take them). Time comes from the injected clock."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from aitbc.domain.clock import Clock
from aitbc.domain.job import FailureReason, Job, JobStatus
from aitbc.domain.moves import Expire, Fail, ForceCancel, Requeue
from aitbc.services.jobs import JobService
from aitbc.services.lifecycle import Lifecycle
from aitbc.settings import Settings
from aitbc.storage.interfaces import JobLifecycleStore

log = logging.getLogger(__name__)
BATCH = 500


@dataclass
class ReaperReport:
    requeued: int = 0
    lost: int = 0
    force_canceled: int = 0
    expired: int = 0
    unpinnable: int = 0

    @property
    def total(self) -> int:
        return self.requeued + self.lost + self.force_canceled + self.expired + self.unpinnable


class Reaper:
    def __init__(
        self, jobs: JobLifecycleStore, job_service: JobService, lifecycle: Lifecycle, clock: Clock, settings: Settings
    ) -> None:
        self._jobs = jobs
        self._job_service = job_service
        self._lifecycle = lifecycle
        self._clock = clock
        self._settings = settings

    async def grace_after_start(self) -> int:
        """A coordinator that was down longer than a lease must not count its own outage against the miners:
        before the first pass, every running lease gets one full lease period for its miner to reconnect and
        deliver what it finished meanwhile."""
        until = self._clock.now() + timedelta(seconds=self._settings.lease_seconds)
        return await self._jobs.renew_running_leases(until)

    async def run_once(self) -> ReaperReport:
        report = ReaperReport()
        now = self._clock.now()
        for status in (JobStatus.ASSIGNED, JobStatus.RUNNING):
            for job in await self._jobs.expired(status, now, BATCH):
                await self._lost(job, report)
        for job in await self._jobs.expired(JobStatus.CANCELING, now, BATCH):
            forced = ForceCancel(
                completed_at=now, error="the miner did not confirm the cancellation in time; the lease was revoked"
            )
            if await self._lifecycle.move(job, forced, now, lease_expired_by=now):
                report.force_canceled += 1
        for job in await self._jobs.expired(JobStatus.PENDING, now, BATCH):
            why = await self._job_service.waiting_for(job)
            waited = round((job.queue_expires_at - job.created_at).total_seconds())
            error = f"no miner took the job within {waited} s" + (f" ({why})" if why else "")
            expired = Expire(completed_at=now, failure_reason=FailureReason.EXPIRED, error=error)
            if await self._lifecycle.move(job, expired, now):
                report.expired += 1
        since = now - timedelta(seconds=self._settings.miner_active_seconds)
        for job in await self._jobs.pinned_to_lost_miners(since, BATCH):
            error = (
                f"its miner {job.spec.requirements.miner_id} was not heard from in "
                f"{self._settings.miner_active_seconds} s (stopped or lost), and no other miner may run a pinned job"
            )
            orphaned = Expire(completed_at=now, failure_reason=FailureReason.NO_MINER, error=error)
            if await self._lifecycle.move(job, orphaned, now):
                report.unpinnable += 1
        return report

    async def _lost(self, job: Job, report: ReaperReport) -> None:
        now = self._clock.now()
        write: Requeue | Fail
        if job.attempt < job.max_attempts:
            write = Requeue(error=f"miner {job.miner_id} was lost (lease expired)")
        else:
            write = Fail(
                completed_at=now,
                failure_reason=FailureReason.MINER_LOST,
                error=f"the miner was lost on each of {job.attempt} attempts",
            )
        changed = await self._lifecycle.move(job, write, now, lease_id=job.lease_id, lease_expired_by=now)
        if changed and isinstance(write, Requeue):
            report.requeued += 1
        elif changed:
            report.lost += 1

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reaper pass failed; retrying")
            await asyncio.sleep(self._settings.reaper_interval_seconds)
