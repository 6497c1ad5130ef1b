"""Deleting results, by the client or by retention: the job's results are marked `deleted` or `expired` and its
share links revoked in one transaction (the store queues the purge of its blobs there too), its followers are
told, and only then are the blobs removed, so a crash in between leaves a queued purge the sweeper retries
rather than a record pointing at missing files."""

from __future__ import annotations

from aitbc.blobs.interface import BlobStore
from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import Conflict, NotFound
from aitbc.domain.job import Job
from aitbc.domain.package import ResultsState
from aitbc.protocol.results import ResultsDeleted
from aitbc.services.jobs import JobService
from aitbc.storage.interfaces import JobEventLog
from aitbc.storage.results import ResultStore
from aitbc.streaming.hub import EventHub


class ResultDeletion:
    def __init__(
        self,
        events: JobEventLog,
        results: ResultStore,
        job_service: JobService,
        blobs: BlobStore,
        hub: EventHub,
        clock: Clock,
    ) -> None:
        self._events = events
        self._results = results
        self._job_service = job_service
        self._blobs = blobs
        self._hub = hub
        self._clock = clock

    async def delete(self, principal: Principal, job_id: str) -> ResultsDeleted:
        """Delete the result files and revoke the share links; the job stays in history as `deleted`."""
        job = await self._job_service.get(principal, job_id)
        if not job.is_terminal:
            raise Conflict(
                f"job {job.id} is {job.status.value}: its results can be deleted once it finishes (cancel it first)"
            )
        if job.results_state == ResultsState.NONE.value:
            raise NotFound(f"job {job.id} has no results to delete")
        retired = await self._results.retire_results(job.id, ResultsState.DELETED, self._clock.now())
        if retired is None:
            current = await self._job_service.get(principal, job_id)
            return ResultsDeleted(
                job_id=job.id, results=current.results_state, message=f"results already {current.results_state}"
            )
        await self.after_retire(retired)
        return ResultsDeleted(
            job_id=job.id, results=retired.results_state, message="result files deleted and share links revoked"
        )

    async def after_retire(self, job: Job) -> None:
        """Tell the job's followers, then remove the blobs (a crash here leaves the purge queued for the
        sweeper)."""
        event = await self._events.append_event(job, "results", self._clock.now(), {"results": job.results_state})
        self._hub.publish(event)
        await self.purge(job.id)

    async def purge(self, job_id: str) -> int:
        """Remove the blobs of a retired job's results and mark its queued purge done; how many went."""
        removed = await self._blobs.delete_prefix(f"results/{job_id}")
        await self._results.finish_purge(job_id)
        return removed
