"""Finishing a job: the miner's complete or fail, with its signed manifest checked against what it uploaded.

A finish moves the job to its end (or back to the queue, for a retryable failure with attempts left) in one
move through `Lifecycle`, which settles the bill in the same transaction. A retried finish of the same lease
answers as the first one did, so a miner that lost the answer can safely send it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aitbc.domain.accounts import Miner, Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import AitbcError, Conflict, InvalidInput, NotFound
from aitbc.domain.job import Job, JobStatus
from aitbc.domain.manifest import PackagePaths, digest, verify
from aitbc.domain.moves import Complete, ConfirmCancel, Fail, MinerReport, Requeue, WriteSet
from aitbc.domain.package import ResultsState
from aitbc.protocol.miners import (
    BatchCompleteItem,
    BatchCompleteResult,
    FailRequest,
    FinishRequest,
    ItemError,
    JobDirective,
)
from aitbc.services.leases import LeaseGuard, check_lease, directive
from aitbc.services.lifecycle import Lifecycle, Planned
from aitbc.storage.interfaces import JobReadModel, ResultFile, ResultRecords, StoredResult


def _report(request: FinishRequest, result: StoredResult | None) -> MinerReport:
    """What the finish reports, kept with the job: its lease, whether it left results, its exit code and the
    miner's own start and end of the work (billing caps them by what we observed)."""
    return MinerReport(
        result_lease_id=request.lease_id,
        results_state=ResultsState.AVAILABLE if result else ResultsState.NONE,
        exit_code=request.exit_code,
        started_at=request.started_at,
        ended_at=request.ended_at,
    )


def _to_finish(owned: Job | NotFound, lease_id: str) -> Job | JobDirective:
    """A job the miner owns (or why not), under a current lease, or the answer already given if this finish
    is a retry."""
    if isinstance(owned, NotFound):
        raise owned
    if (done := _already_finished(owned, lease_id)) is not None:
        return done
    check_lease(owned, lease_id)
    return owned


def _refused(job_id: str, error: AitbcError) -> BatchCompleteResult:
    return BatchCompleteResult(
        job_id=job_id, error=ItemError(status=error.status_code, code=error.code, message=error.message)
    )


def _already_finished(job: Job, lease_id: str) -> JobDirective | None:
    """A retried finish of the same lease answers like the first one did (exactly-once effect)."""
    if job.status.is_terminal and job.result_lease_id == lease_id:
        return directive(job)
    return None


class FinishService:
    def __init__(
        self, jobs: JobReadModel, files: ResultRecords, guard: LeaseGuard, lifecycle: Lifecycle, clock: Clock
    ) -> None:
        self._jobs = jobs
        self._files = files
        self._guard = guard
        self._lifecycle = lifecycle
        self._clock = clock

    async def complete(self, principal: Principal, miner_id: str, job_id: str, request: FinishRequest) -> JobDirective:
        found = await self._finishing(principal, miner_id, job_id, request.lease_id)
        if isinstance(found, JobDirective):
            return found
        miner, job = found
        planned = await self._completion(miner, job, request)
        return await self._finish(job, planned.write, request.lease_id, planned.result)

    async def complete_many(
        self, principal: Principal, miner_id: str, items: Sequence[BatchCompleteItem]
    ) -> list[BatchCompleteResult]:
        """Complete several jobs in one transaction, each checked and settled as `complete` does one. An item
        refused (not this miner's job, a stale lease, a manifest that does not check) fails alone with its
        error and the others still complete; a retried item answers as its first completion did."""
        miner = await self._guard.miner(principal, miner_id)
        owned = await self._guard.owned_jobs(miner, [item.job_id for item in items])
        uploads = await self._files.result_files_of([(i.job_id, i.lease_id) for i in items if i.manifest is not None])
        answers: dict[int, BatchCompleteResult] = {}
        planned: list[tuple[int, Planned]] = []
        for index, item in enumerate(items):
            try:
                job = _to_finish(owned[item.job_id], item.lease_id)
                if isinstance(job, JobDirective):
                    answers[index] = BatchCompleteResult(job_id=item.job_id, directive=job)
                    continue
                uploaded = uploads.get((item.job_id, item.lease_id), [])
                planned.append((index, await self._completion(miner, job, item, uploaded)))
            except AitbcError as error:
                answers[index] = _refused(item.job_id, error)
        moved = await self._lifecycle.move_many([move for _, move in planned], self._clock.now())
        for (index, move), changed in zip(planned, moved, strict=True):
            job_id = move.job.id
            try:
                done = directive(changed.job) if changed else await self._lost(move.job, move.lease_id or "")
                answers[index] = BatchCompleteResult(job_id=job_id, directive=done)
            except AitbcError as error:
                answers[index] = _refused(job_id, error)
        return [answers[index] for index in range(len(items))]

    async def _completion(
        self, miner: Miner, job: Job, request: FinishRequest, uploaded: Sequence[ResultFile] | None = None
    ) -> Planned:
        """The move that completes `job` (or confirms its cancel, if one was asked for meanwhile); `uploaded`:
        the files of its lease, when the caller read them already."""
        canceling = job.status is JobStatus.CANCELING
        result = await self._checked_result(miner, job, request, partial=canceling, uploaded=uploaded)
        now, report = self._clock.now(), _report(request, result)
        write = ConfirmCancel(now, report) if canceling else Complete(now, report)
        return Planned(job, write, lease_id=request.lease_id, result=result)

    async def fail(self, principal: Principal, miner_id: str, job_id: str, request: FailRequest) -> JobDirective:
        found = await self._finishing(principal, miner_id, job_id, request.lease_id)
        if isinstance(found, JobDirective):
            return found
        miner, job = found
        canceling = job.status is JobStatus.CANCELING
        now = self._clock.now()
        if not canceling and request.retryable and job.attempt < job.max_attempts:
            requeue = Requeue(error=f"attempt {job.attempt} failed on {miner.id}: {request.message}")
            return await self._finish(job, requeue, request.lease_id, None)
        result = await self._checked_result(miner, job, request, partial=True)
        report = _report(request, result)
        if canceling:
            return await self._finish(job, ConfirmCancel(now, report), request.lease_id, result)
        failed = Fail(now, request.reason, request.message or request.reason.value, report)
        return await self._finish(job, failed, request.lease_id, result)

    async def _finishing(
        self, principal: Principal, miner_id: str, job_id: str, lease_id: str
    ) -> tuple[Miner, Job] | JobDirective:
        """The miner and the job it is finishing, or the answer already given if this finish is a retry. The
        miner's ownership of the job comes first: a replay with another account's key is a 404, not a 200."""
        miner = await self._guard.miner(principal, miner_id)
        job = await self._job_to_finish(miner, job_id, lease_id)
        return job if isinstance(job, JobDirective) else (miner, job)

    async def _job_to_finish(self, miner: Miner, job_id: str, lease_id: str) -> Job | JobDirective:
        """The miner's job under a current lease, or the answer already given if this finish is a retry."""
        return _to_finish(await self._guard.owned_job(miner, job_id), lease_id)

    async def _checked_result(
        self,
        miner: Miner,
        job: Job,
        request: FinishRequest,
        partial: bool,
        uploaded: Sequence[ResultFile] | None = None,
    ) -> StoredResult | None:
        """The result to keep, once the manifest names this job and miner, its signature verifies with the
        miner's registered key, and every file it lists was uploaded under this lease with that size and hash."""
        manifest = request.manifest
        if manifest is None:
            return None
        if manifest.job_id != job.id or manifest.miner_id != miner.id:
            raise InvalidInput("the manifest names another job or miner")
        document: dict[str, Any] = manifest.model_dump(mode="json")
        if not request.signature or not verify(miner.public_key, document, request.signature):
            raise InvalidInput("the manifest's signature does not verify with this miner's registered public key")
        if uploaded is None:
            uploaded = await self._files.result_files(job.id, request.lease_id)
        by_path = {f.path: f for f in uploaded}
        paths = PackagePaths()
        for entry in manifest.files:
            paths.add(entry.path)
            stored = by_path.get(entry.path)
            if stored is None:
                raise InvalidInput(f"{entry.path} is in the manifest but was not uploaded")
            if stored.size != entry.size or stored.sha256 != entry.sha256:
                raise InvalidInput(
                    f"{entry.path}: uploaded {stored.size} bytes with sha256 {stored.sha256}, "
                    f"manifest says {entry.size} bytes with sha256 {entry.sha256}"
                )
        return StoredResult(
            job_id=job.id,
            lease_id=request.lease_id,
            miner_id=miner.id,
            manifest=document,
            manifest_sha256=digest(document),
            miner_signature=request.signature,
            partial=partial,
            miner_public_key=miner.public_key,
            usage=dict(request.usage),
            timings=request.timings.model_dump() if request.timings is not None else None,
            created_at=self._clock.now(),
        )

    async def _finish(self, job: Job, write: WriteSet, lease_id: str, result: StoredResult | None) -> JobDirective:
        changed = await self._lifecycle.move(job, write, self._clock.now(), lease_id=lease_id, result=result)
        if changed is None:
            return await self._lost(job, lease_id)
        return directive(changed.job)

    async def _lost(self, job: Job, lease_id: str) -> JobDirective:
        """A finish whose compare-and-set did not apply: the answer of a concurrent copy of it that won, or 409."""
        latest = await self._jobs.get_job(job.id)
        done = _already_finished(latest, lease_id) if latest and latest.miner_id == job.miner_id else None
        if done is not None:
            return done
        raise Conflict(f"lease {lease_id} is no longer current for job {job.id}")
