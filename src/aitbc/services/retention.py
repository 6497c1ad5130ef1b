"""The retention sweeper: results past their account plan's retention are removed from blob storage and the
job is marked `results: expired` (it stays in history); purges a crash left behind are retried, blobs no
available result refers to and input files past the same retention are purged, and receipts not yet asked
for are signed. Time comes from the injected clock."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from aitbc.domain.clock import Clock
from aitbc.domain.package import ResultsState
from aitbc.services.blob_purge import BlobPurger
from aitbc.services.results import ResultService
from aitbc.settings import Settings
from aitbc.storage.results import ResultStore

log = logging.getLogger(__name__)
BATCH = 200
RECEIPT_WINDOW = timedelta(days=1)


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
        self, results: ResultStore, service: ResultService, purger: BlobPurger, clock: Clock, settings: Settings
    ) -> None:
        self._results = results
        self._purger = purger
        self._service = service
        self._clock = clock
        self._settings = settings

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """Per plan, results completed before this moment have expired."""
        return {
            plan.value: now - timedelta(days=limits.retention_days)
            for plan, limits in self._settings.plan_limits.items()
        }

    async def run_once(self) -> SweepReport:
        report = SweepReport()
        now = self._clock.now()
        cutoffs = self.cutoffs(now)
        while True:
            due = await self._results.expired_results(cutoffs, BATCH)
            for job in due:
                retired = await self._results.retire_results(job.id, ResultsState.EXPIRED, now, expired_before=cutoffs)
                if retired is not None:
                    report.expired += 1
                    await self._service.after_retire(retired)
            if len(due) < BATCH:
                break
        retry_before = now - timedelta(seconds=self._settings.purge_retry_seconds)
        for purge in await self._results.queued_purges(retry_before, BATCH):
            await self._service.purge(purge.job_id)
            report.purged += 1
        swept = await self._purger.run_once(cutoffs)
        report.result_files_purged = swept.result_files
        report.input_files_expired = swept.input_files
        report.orphan_blobs_purged = swept.orphan_blobs
        report.receipts = await self._service.issue_missing_receipts(now - RECEIPT_WINDOW, BATCH)
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
            await asyncio.sleep(self._settings.results_sweep_interval_seconds)
