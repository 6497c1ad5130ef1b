"""The job presenter: the one place a job becomes the `JobView` a client sees, whichever call answers with it.

A view needs more than the job row: when its results expire depends on its account's plan, and a pending
job says why no miner has taken it yet. Submit, read, list, cancel, retry and export all answer through
here, so every route makes one call for its response and no two of them show the same job differently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from aitbc.domain.accounts import Principal
from aitbc.domain.job import Job, JobStatus
from aitbc.domain.plans import Plan
from aitbc.protocol.batches import BatchItemResult, BatchJobRequest, BatchResult
from aitbc.protocol.cancels import CanceledJob, CancelJobsResult
from aitbc.protocol.jobs import CancelResult, JobList, JobView, SubmitJobRequest, SubmittedJobView
from aitbc.services.downloads import DownloadService
from aitbc.services.jobs import JobService, Submitted
from aitbc.services.retention import Retention
from aitbc.services.views import job_view, submitted_view
from aitbc.services.waiting import JobWaiter
from aitbc.storage.interfaces import JobFilter


@dataclass(frozen=True)
class SubmittedView:
    """The new job's view (with the warnings it was accepted with), and whether this call made it (False: an
    Idempotency-Key replay)."""

    view: SubmittedJobView
    created: bool


class JobPresenter:
    def __init__(self, jobs: JobService, retention: Retention, waiter: JobWaiter, downloads: DownloadService) -> None:
        self._jobs = jobs
        self._retention = retention
        self._waiter = waiter
        self._downloads = downloads

    async def view(self, job: Job) -> JobView:
        """The job's full view: its results' expiry and, while pending, what it waits for."""
        waiting_for = await self._jobs.waiting_for(job)
        return job_view(job, waiting_for, await self._retention.expire_at(job))

    async def views(self, jobs: Sequence[Job], plans: Mapping[str, Plan] | None = None) -> list[JobView]:
        """Views for a page of jobs (each account's plan looked up once, unless `plans` were read with the
        page; `waiting_for` only on a single job)."""
        moments = await self._retention.expire_at_each(jobs, plans)
        return [job_view(job, None, expire_at) for job, expire_at in zip(jobs, moments, strict=True)]

    async def waited(self, job: Job, seconds: float, gone: asyncio.Event | None = None) -> JobView:
        """The job's view once it has ended (with its main output, `result`), or as it stands when `seconds`
        are up or the client hangs up (`gone`)."""
        job = await self._waiter.until_ended(job, seconds, gone)
        view = await self.view(job)
        if job.is_terminal:
            view.result = await self._downloads.main_output(job)
        return view

    async def submit_and_wait(
        self,
        principal: Principal,
        request: SubmitJobRequest,
        idempotency_key: str | None,
        seconds: float,
        gone: asyncio.Event | None = None,
    ) -> SubmittedView:
        """`submit`, then `waited` (a replay of an Idempotency-Key waits for the job it made)."""
        submitted = await self._jobs.submit(principal, request, idempotency_key)
        view = await self.waited(submitted.job, seconds, gone)
        answer = SubmittedJobView(**view.__dict__, warnings=list(submitted.warnings))  # once per held request
        return SubmittedView(view=answer, created=submitted.created)

    async def get_and_wait(
        self, principal: Principal, job_id: str, seconds: float, gone: asyncio.Event | None = None
    ) -> JobView:
        return await self.waited(await self._jobs.get(principal, job_id), seconds, gone)

    async def submitted(self, submitted: Submitted) -> SubmittedView:
        job = submitted.job
        waiting_for = await self._jobs.waiting_for(job)
        view = submitted_view(job, submitted.warnings, waiting_for, await self._retention.expire_at(job))
        return SubmittedView(view=view, created=submitted.created)

    async def submit(
        self, principal: Principal, request: SubmitJobRequest, idempotency_key: str | None = None
    ) -> SubmittedView:
        return await self.submitted(await self._jobs.submit(principal, request, idempotency_key))

    async def submit_many(self, principal: Principal, requests: Sequence[BatchJobRequest]) -> BatchResult:
        """A batch's answer: a result per item, in order (views as a page shows them: no `waiting_for`)."""
        pairs = [(request.job_request(), request.idempotency_key) for request in requests]
        submitted = await self._jobs.submit_many(principal, pairs)
        views = await self.views([each.job for each in submitted])
        return BatchResult(
            jobs=[
                BatchItemResult(index=index, created=each.created, job=view, warnings=list(each.warnings))
                for index, (each, view) in enumerate(zip(submitted, views, strict=True))
            ],
            created=sum(each.created for each in submitted),
        )

    async def get(self, principal: Principal, job_id: str) -> JobView:
        """The status GET: one statement (the job with its account's plan); `waiting_for` comes from the
        in-memory view of live miners."""
        job, plan = await self._jobs.get_with_plan(principal, job_id)
        return job_view(job, await self._jobs.waiting_for(job), self._retention.expire_at_on(job, plan))

    async def list(
        self,
        principal: Principal,
        statuses: list[JobStatus],
        created_from: datetime | None,
        created_to: datetime | None,
        limit: int,
        cursor: str | None,
        tag: str | None = None,
        name: str | None = None,
    ) -> JobList:
        page = await self._jobs.list(principal, statuses, created_from, created_to, limit, cursor, tag, name)
        return JobList(
            jobs=await self.views(page.jobs, page.plans),
            total=page.total,
            has_more=page.next_cursor is not None,
            next_cursor=page.next_cursor,
        )

    async def cancel(self, principal: Principal, job_id: str) -> CancelResult:
        canceled = await self._jobs.cancel(principal, job_id)
        return CancelResult(
            job_id=canceled.job.id,
            outcome=canceled.outcome,
            status=canceled.job.status,
            reason=canceled.reason,
            message=canceled.message,
            job=await self.view(canceled.job),
        )

    async def cancel_matching(self, where: JobFilter, limit: int) -> CancelJobsResult:
        canceled, more = await self._jobs.cancel_matching(where, limit)
        outcomes = [each.outcome for each in canceled]
        return CancelJobsResult(
            canceled=outcomes.count("canceled"),
            canceling=outcomes.count("canceling"),
            failed=outcomes.count("failed"),
            more=more,
            jobs=[
                CanceledJob(job_id=each.job.id, outcome=each.outcome, status=each.job.status, message=each.message)
                for each in canceled
            ],
        )
