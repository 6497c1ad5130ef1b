"""Receipts signed the moment a job finishes: a lifespan task follows every job event on the hub and signs
the receipt of each job that reaches a terminal status with a result. The sweeper signs any it missed
(a replica that died, a dropped subscription), and a receipt asked for first is signed on the spot."""

from __future__ import annotations

import logging

from aitbc.domain.errors import AitbcError
from aitbc.domain.job import JobStatus
from aitbc.domain.package import ResultsState
from aitbc.services.results import ResultService
from aitbc.storage.interfaces import JobStore
from aitbc.streaming.hub import EventHub

log = logging.getLogger(__name__)
TERMINAL = {status.value for status in JobStatus if status.is_terminal}


class ReceiptIssuer:
    def __init__(self, jobs: JobStore, results: ResultService, hub: EventHub) -> None:
        self._jobs = jobs
        self._results = results
        self._hub = hub

    async def issue_for(self, job_id: str) -> None:
        """Sign the receipt of a finished job that has a result, unless it has one."""
        job = await self._jobs.get_job(job_id)
        if job is not None and job.is_terminal and job.results_state != ResultsState.NONE.value:
            await self._results.receipt_of(job)

    async def run_forever(self) -> None:
        while True:
            subscription = self._hub.subscribe(None)
            try:
                while (event := await subscription.next_event()) is not None:
                    if event.kind != "status" or event.status not in TERMINAL:
                        continue
                    try:
                        await self.issue_for(event.job_id)
                    except AitbcError as error:
                        log.warning("no receipt for job %s: %s", event.job_id, error.message)
                    except Exception:
                        log.exception("signing the receipt of job %s failed; the sweeper retries", event.job_id)
            finally:
                self._hub.unsubscribe(subscription)
            if self._hub.stopping:
                return
            # Dropped for falling behind: the sweeper signs what was missed; follow again.
