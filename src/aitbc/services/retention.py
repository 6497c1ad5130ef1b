"""How long results are kept, and the sweeper that enforces it.

Results are kept for the retention days of the job's account's plan, counted from completion; a plan change
applies to results already stored. The job presenter shows the moment, the package service refuses a package
past it, and the sweeper removes the files (the job stays in history as `results: expired`), retries purges a
crash left behind, purges blobs no available result refers to and input files past the same retention, and
signs receipts not yet asked for. Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aitbc.domain.clock import Clock
from aitbc.domain.job import Job
from aitbc.domain.package import ResultsState, results_expire_at
from aitbc.domain.plans import Plan
from aitbc.services.blob_purge import BlobPurger
from aitbc.services.deletion import ResultDeletion
from aitbc.services.receipts import ReceiptService
from aitbc.settings import Settings
from aitbc.storage.interfaces import AccountStore
from aitbc.storage.results import ResultStore

log = logging.getLogger(__name__)
BATCH = 200
RECEIPT_WINDOW = timedelta(days=1)


class Retention:
    """When a job's results expire: completion + its account plan's retention days."""

    def __init__(self, accounts: AccountStore, settings: Settings) -> None:
        self._accounts = accounts
        self._settings = settings

    async def plan_of(self, account_id: str) -> Plan:
        account = await self._accounts.get_account(account_id)
        return account.plan if account is not None else Plan.FREE

    def days(self, plan: Plan) -> int:
        return self._settings.plan_limits[plan].retention_days

    async def expire_at(self, job: Job) -> datetime | None:
        """None unless the job's results are available."""
        return (await self.expire_at_each([job]))[0]

    def expire_at_on(self, job: Job, plan: Plan) -> datetime | None:
        """`expire_at` when the plan of the job's account was read with the job (no lookup)."""
        if job.results_state != ResultsState.AVAILABLE.value:
            return None
        return results_expire_at(job.completed_at, self.days(plan))

    async def expire_at_each(
        self, jobs: Sequence[Job], known: Mapping[str, Plan] | None = None
    ) -> list[datetime | None]:
        """`expire_at` of each job, looking each account's plan up once (unless `known`: read with the jobs)."""
        plans: dict[str, Plan] = dict(known or {})
        moments: list[datetime | None] = []
        for job in jobs:
            if job.results_state != ResultsState.AVAILABLE.value:
                moments.append(None)
                continue
            if job.account_id not in plans:
                plans[job.account_id] = await self.plan_of(job.account_id)
            moments.append(results_expire_at(job.completed_at, self.days(plans[job.account_id])))
        return moments

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """Per plan, results completed before this moment have expired."""
        return {
            plan.value: now - timedelta(days=limits.retention_days)
            for plan, limits in self._settings.plan_limits.items()
        }


@dataclass
class SweepReport:
    expired: int = 0
    purged: int = 0
    receipts: int = 0
    result_files_purged: int = 0
    input_files_expired: int = 0
    orphan_blobs_purged: int = 0


class RetentionSweeper:
    def __init__(
        self,
        results: ResultStore,
        retention: Retention,
        deletion: ResultDeletion,
        receipts: ReceiptService,
        purger: BlobPurger,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._results = results
        self._retention = retention
        self._deletion = deletion
        self._receipts = receipts
        self._purger = purger
        self._clock = clock
        self._settings = settings
        self.passes = 0  # finished passes of `run_forever`, for whoever must know one is over (tests, probes)

    async def run_once(self) -> SweepReport:
        report = SweepReport()
        now = self._clock.now()
        cutoffs = self._retention.cutoffs(now)
        while True:
            due = await self._results.expired_results(cutoffs, BATCH)
            for job in due:
                retired = await self._results.retire_results(job.id, ResultsState.EXPIRED, now, expired_before=cutoffs)
                if retired is not None:
                    report.expired += 1
                    await self._deletion.after_retire(retired)
            if len(due) < BATCH:
                break
        retry_before = now - timedelta(seconds=self._settings.purge_retry_seconds)
        for purge in await self._results.queued_purges(retry_before, BATCH):
            await self._deletion.purge(purge.job_id)
            report.purged += 1
        swept = await self._purger.run_once(cutoffs)
        report.result_files_purged = swept.result_files
        report.input_files_expired = swept.input_files
        report.orphan_blobs_purged = swept.orphan_blobs
        report.receipts = await self._receipts.issue_missing(now - RECEIPT_WINDOW, BATCH)
        return report

    async def run_forever(self) -> None:
        while True:
            try:
                report = await self.run_once()
                if report.expired or report.purged:
                    log.info("results sweep: %d expired, %d purges retried", report.expired, report.purged)
                if report.result_files_purged or report.input_files_expired or report.orphan_blobs_purged:
                    log.info(
                        "blob purge: %d unreferenced result files, %d expired input files, %d orphan blobs",
                        report.result_files_purged,
                        report.input_files_expired,
                        report.orphan_blobs_purged,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("results sweep failed; retrying")
            self.passes += 1
            await asyncio.sleep(self._settings.results_sweep_interval_seconds)
