"""The reaper: lost leases go back to the queue (or fail as `miner_lost`), unanswered cancels are forced,
jobs nobody takes before their queue TTL fail as `expired`, and jobs pinned to a miner that is lost fail as
`no_miner` (no other miner may take them). Time comes from the injected clock.

A miner is lost sooner than its leases end: one that misses its heartbeats for `miner_lost_after_seconds`
(15 s; it is told to heartbeat at least three times in that window, whether it runs jobs or not) loses its jobs
then, exactly as if their leases had expired. The database's `last_seen_at` finds the candidates in one query,
and this replica's view of live miners (which a touch updates at once, and other replicas relay to) must agree
before a job is handed back; the move is still guarded by the lease, so a miner that comes back and completes
or heartbeats first keeps its job. After a start, no miner is lost for a lease period: a coordinator that was
down must not count its own outage against the miners, which reconnect within seconds."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from aitbc.domain.clock import Clock
from aitbc.domain.job import FailureReason, Job, JobStatus
from aitbc.domain.moves import Expire, Fail, ForceCancel, Requeue
from aitbc.services.jobs import JobService
from aitbc.services.lifecycle import Lifecycle
from aitbc.services.miner_registry import LiveMiners
from aitbc.settings import Settings
from aitbc.storage.interfaces import JobLifecycleStore

log = logging.getLogger(__name__)
BATCH = 500
EPSILON = timedelta(microseconds=1)  # the guard is `lease_expires_at < bound`: bound = as read, plus one tick


@dataclass
class ReaperReport:
    requeued: int = 0
    lost: int = 0
    force_canceled: int = 0
    expired: int = 0
    unpinnable: int = 0
    silent_miners: int = 0  # miners found lost by their missed heartbeats (their jobs are counted above)

    @property
    def total(self) -> int:
        return self.requeued + self.lost + self.force_canceled + self.expired + self.unpinnable


class Reaper:
    def __init__(
        self,
        jobs: JobLifecycleStore,
        job_service: JobService,
        lifecycle: Lifecycle,
        clock: Clock,
        settings: Settings,
        miners: LiveMiners,
    ) -> None:
        self._jobs = jobs
        self._job_service = job_service
        self._lifecycle = lifecycle
        self._clock = clock
        self._settings = settings
        self._miners = miners
        self._lost_from: datetime | None = None  # when missed heartbeats start to count (see grace_after_start)

    async def grace_after_start(self) -> int:
        """A coordinator that was down longer than a lease must not count its own outage against the miners:
        before the first pass, every running lease gets one full lease period for its miner to reconnect and
        deliver what it finished meanwhile, and no miner is lost by its missed heartbeats before that period
        ends either (their `last_seen_at` is from before the outage). This is the reaper's start: a reaper that
        was never started (tests that drive `run_once`) finds jobs by their leases alone."""
        now = self._clock.now()
        until = now + timedelta(seconds=self._settings.lease_seconds)
        self._lost_from = until
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
        if self._lost_from is not None and now >= self._lost_from:
            await self._silent_miners(now, report)
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

    async def _silent_miners(self, now: datetime, report: ReaperReport) -> None:
        """The jobs of miners that missed their heartbeats for the lost window go as lost leases do. Each move
        is guarded by the lease as read: a heartbeat since (which extends it) or a finish keeps the job."""
        lost_after = self._settings.miner_lost_after_seconds
        since = now - timedelta(seconds=lost_after)
        silent: set[str] = set()
        for job in await self._jobs.held_by_lost_miners(since, BATCH):
            if job.miner_id is None or self._miners.heard_since(job.miner_id, since):
                continue  # the database lags: this replica (or one that relayed it) heard the miner since
            silent.add(job.miner_id)
            unchanged = job.lease_expires_at + EPSILON if job.lease_expires_at is not None else None
            if job.status is JobStatus.CANCELING:
                forced = ForceCancel(
                    completed_at=now,
                    error=f"the miner missed its heartbeats for {lost_after} s before confirming the cancellation; "
                    "the lease was revoked",
                )
                if await self._lifecycle.move(job, forced, now, lease_expired_by=unchanged):
                    report.force_canceled += 1
                continue
            why = f"missed its heartbeats for {lost_after} s"
            await self._lost(job, report, why, unchanged)
        report.silent_miners += len(silent)
        for miner_id in sorted(silent):
            log.warning("miner %s missed its heartbeats for %d s: its jobs went back", miner_id, lost_after)

    async def _lost(
        self, job: Job, report: ReaperReport, why: str = "lease expired", lease_expired_by: datetime | None = None
    ) -> None:
        """Requeue the job of a lost miner while attempts remain, else fail it `miner_lost`; only while its
        lease is still the one read and was not extended past `lease_expired_by` (by default: now)."""
        now = self._clock.now()
        write: Requeue | Fail
        if job.attempt < job.max_attempts:
            write = Requeue(error=f"miner {job.miner_id} was lost ({why})")
        else:
            write = Fail(
                completed_at=now,
                failure_reason=FailureReason.MINER_LOST,
                error=f"the miner was lost on each of {job.attempt} attempts (last: {why})",
            )
        expired_by = lease_expired_by or now
        changed = await self._lifecycle.move(job, write, now, lease_id=job.lease_id, lease_expired_by=expired_by)
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
