"""Miner use cases: register, heartbeat, claim under a lease, start, progress, logs, upload, complete, fail.

Every call that acts on a job names its lease; a lease that is no longer the job's current one is a 409
and changes nothing, so a miner that was presumed lost can never overwrite the work of its successor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable
from datetime import datetime, timedelta
from typing import Any

from aitbc.blobs.interface import BlobStore
from aitbc.domain.accounts import Miner, Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import Conflict, InvalidInput, NotFound
from aitbc.domain.identifiers import new_lease_id, new_miner_id
from aitbc.domain.job import LEASED_STATUSES, FailureReason, Job, JobStatus
from aitbc.domain.manifest import PackagePaths, check_package_path, digest, load_public_key, verify
from aitbc.domain.matching import Capabilities, Gpu, unmet_requirements
from aitbc.domain.plans import Role
from aitbc.domain.transitions import Move
from aitbc.protocol.miners import (
    Assignment,
    FailRequest,
    FinishRequest,
    InputFileRef,
    JobDirective,
    LeaseState,
    LogsRequest,
    ProgressRequest,
    RegisterRequest,
    RegisterResponse,
    UploadedFile,
)
from aitbc.services.lifecycle import Lifecycle
from aitbc.services.uploads import UploadService
from aitbc.services.views import job_view
from aitbc.settings import Settings
from aitbc.storage.interfaces import JobStore, MinerStore, StoredFile, StoredResult
from aitbc.streaming.hub import EventHub

_HELD = LEASED_STATUSES | {JobStatus.CANCELING}
CANDIDATE_BATCH = 200


def _reported_times(request: FinishRequest) -> dict[str, Any]:
    """The miner's own start and end of the work, kept with the job; billing caps them by what we observed."""
    return {"reported_started_at": request.started_at, "reported_ended_at": request.ended_at}


def _directive(job: Job) -> JobDirective:
    return JobDirective(
        job_id=job.id,
        status=job.status,
        cancel=job.status is JobStatus.CANCELING,
        lease_expires_at=job.lease_expires_at,
    )


class DispatchService:
    def __init__(
        self,
        jobs: JobStore,
        miners: MinerStore,
        blobs: BlobStore,
        hub: EventHub,
        clock: Clock,
        settings: Settings,
        lifecycle: Lifecycle,
        uploads: UploadService,
    ) -> None:
        self._lifecycle = lifecycle
        self._uploads = uploads
        self._jobs = jobs
        self._miners = miners
        self._blobs = blobs
        self._hub = hub
        self._clock = clock
        self._settings = settings

    # -- miners -------------------------------------------------------------------------------------

    async def register(self, principal: Principal, request: RegisterRequest) -> RegisterResponse:
        """Register, or re-register under the same name (same id). A name is one miner: while a miner of that
        name is active with another key, a second one is refused, or its signatures would not verify."""
        load_public_key(request.public_key)
        now = self._clock.now()
        existing = await self._miners.get_miner_by_name(principal.account.id, request.name)
        if existing is not None and existing.public_key != request.public_key:
            idle = (now - existing.last_seen_at).total_seconds()
            if idle < self._settings.miner_active_seconds:
                raise Conflict(
                    f"a miner named {request.name!r} is already running with another key (heard from {idle:.0f} s "
                    "ago): give this one another --name, or stop the other and retry in "
                    f"{self._settings.miner_active_seconds - idle:.0f} s"
                )
        capabilities = Capabilities(
            runtimes=frozenset(request.runtimes),
            models=frozenset(request.models),
            gpus=tuple(Gpu(model=g.model, vram_gb=g.vram_gb) for g in request.gpus),
        )
        miner = await self._miners.register(
            new_miner_id(),
            principal.account.id,
            request.name,
            capabilities,
            request.max_concurrency,
            request.public_key,
            now,
        )
        await self._hub.work_available()
        return RegisterResponse(
            miner_id=miner.id,
            lease_seconds=self._settings.lease_seconds,
            heartbeat_seconds=max(1, self._settings.lease_seconds // 4),
        )

    async def miner(self, principal: Principal, miner_id: str) -> Miner:
        miner = await self._miners.get_miner(miner_id)
        if miner is None or (principal.role is not Role.ADMIN and miner.account_id != principal.account.id):
            raise NotFound(f"miner {miner_id} not found: register first")
        return miner

    async def heartbeat(
        self, principal: Principal, miner_id: str, lease_ids: list[str], wait_seconds: float = 0
    ) -> list[LeaseState]:
        """Keep the miner's leases alive; with `wait_seconds`, hold the answer until one of its jobs is
        being cancelled (that is how a cancel reaches a miner at once)."""
        miner = await self.miner(principal, miner_id)
        wakeup = self._hub.miner_wakeup(miner.id)
        deadline = time.monotonic() + min(wait_seconds, self._settings.max_claim_wait_seconds)
        while True:
            wakeup.clear()
            now = self._clock.now()
            await self._miners.touch(miner.id, now)
            held = await self._jobs.extend_leases(
                miner.id, lease_ids, now + timedelta(seconds=self._settings.lease_seconds)
            )
            states = [self._lease_state(job_id, lease_id, held) for job_id, lease_id in self._pairs(lease_ids, held)]
            remaining = deadline - time.monotonic()
            if any(s.cancel for s in states) or remaining <= 0 or self._hub.stopping:
                return states
            try:
                await asyncio.wait_for(wakeup.wait(), timeout=remaining)
            except TimeoutError:
                return states

    @staticmethod
    def _pairs(lease_ids: list[str], held: list[Job]) -> list[tuple[str, str]]:
        by_lease = {job.lease_id: job.id for job in held}
        return [(by_lease.get(lease_id, ""), lease_id) for lease_id in lease_ids]

    @staticmethod
    def _lease_state(job_id: str, lease_id: str, held: list[Job]) -> LeaseState:
        job = next((j for j in held if j.lease_id == lease_id), None)
        if job is None:
            return LeaseState(
                job_id=job_id,
                lease_id=lease_id,
                status=JobStatus.CANCELED,
                active=False,
                cancel=True,
                lease_expires_at=None,
            )
        active = job.status in _HELD
        return LeaseState(
            job_id=job.id,
            lease_id=lease_id,
            status=job.status,
            active=active,
            cancel=job.status is JobStatus.CANCELING or not active,
            lease_expires_at=job.lease_expires_at,
        )

    # -- claiming -----------------------------------------------------------------------------------

    async def claim(
        self,
        principal: Principal,
        miner_id: str,
        max_jobs: int,
        wait_seconds: float,
        gone: asyncio.Event | None = None,
    ) -> list[Assignment]:
        """Long-poll: return at once if work is there, else sleep until a submit or requeue wakes us. When
        `gone` is set (the miner hung up) stop waiting and claim nothing: no job goes to a miner that left."""
        miner = await self.miner(principal, miner_id)
        deadline = time.monotonic() + min(wait_seconds, self._settings.max_claim_wait_seconds)
        gone = gone or asyncio.Event()
        while not gone.is_set() and not self._hub.stopping:  # stopping: answer now, hand out nothing
            version = self._hub.work_version()
            await self._miners.touch(miner.id, self._clock.now())
            claimed = await self._claim_now(miner, max_jobs)
            remaining = deadline - time.monotonic()
            if claimed or remaining <= 0:
                return claimed
            waiting = asyncio.ensure_future(self._hub.wait_for_work(version, remaining))
            hung_up = asyncio.ensure_future(gone.wait())
            try:
                await asyncio.wait({waiting, hung_up}, return_when=asyncio.FIRST_COMPLETED)
            finally:  # cancelled too: no helper task is left pending
                for task in (waiting, hung_up):
                    task.cancel()
        return []

    async def _claim_now(self, miner: Miner, max_jobs: int) -> list[Assignment]:
        assignments: list[Assignment] = []
        candidates = await self._jobs.queued(sorted(miner.capabilities.runtimes), CANDIDATE_BATCH)
        for job in candidates:
            if len(assignments) >= max_jobs:
                break
            if unmet_requirements(job.spec, miner.capabilities):
                continue
            now = self._clock.now()
            lease_id = new_lease_id()
            expires_at = now + timedelta(seconds=self._settings.lease_seconds)
            planned = await self._assignment(job, lease_id, expires_at, job.attempt + 1)
            if not await self._sendable(job, planned, now):
                continue
            changed = await self._lifecycle.move(
                job,
                Move.CLAIM,
                now,
                changes={
                    "miner_id": miner.id,
                    "lease_id": lease_id,
                    "lease_expires_at": expires_at,
                    "assigned_at": now,
                    "progress": 0,
                    "progress_message": None,
                },
                increment_attempt=True,
                event_data={"miner_id": miner.id},
            )
            if changed is None:
                continue  # another miner won this one
            assignments.append(planned.model_copy(update={"attempt": changed.job.attempt}))
        return assignments

    async def _sendable(self, job: Job, planned: Assignment, now: datetime) -> bool:
        """The claim's answer is encoded only after its leases commit: a job whose assignment cannot be encoded
        (text stored before the API checked it) would fail the whole answer, leasing every job in it to a miner
        that never hears of them. Such a job is failed here, before it is leased, and costs nothing."""
        try:
            planned.model_dump_json()
        except ValueError:
            changes = {
                "completed_at": now,
                "failure_reason": FailureReason.INVALID_INPUT.value,
                "error": "the job's input or params hold text that cannot be sent to a miner (not valid Unicode)",
            }
            await self._lifecycle.move(job, Move.EXPIRE, now, changes=changes)
            return False
        return True

    async def _assignment(self, job: Job, lease_id: str, lease_expires_at: datetime, attempt: int) -> Assignment:
        spec = job.spec
        file_ref = None
        if spec.input_file_id:
            stored = await self._jobs.get_input_file(spec.input_file_id)
            if stored is not None:
                file_ref = InputFileRef(file_id=stored.id, name=stored.name, size=stored.size, sha256=stored.sha256)
        return Assignment.model_validate(
            {
                "job_id": job.id,
                "lease_id": lease_id,
                "lease_expires_at": lease_expires_at,
                "type": spec.type,
                "model": spec.model,
                "input": spec.input,
                "input_file": file_ref,
                "params": spec.params,
                "requirements": job_view(job).requirements,
                "priority": spec.priority,
                "timeout_seconds": spec.timeout_seconds,
                "attempt": attempt,
            }
        )

    # -- running ------------------------------------------------------------------------------------

    async def _owned_job(self, miner: Miner, job_id: str) -> Job:
        """The job, if this miner holds it or held it last. Ownership is checked before anything else: another
        miner's job (another tenant's or a sibling's) is the same 404 as no job at all, whatever lease is named,
        so nothing about it leaks and no lease of it can be used."""
        job = await self._jobs.get_job(job_id)
        if job is None or job.miner_id != miner.id:
            raise NotFound(f"job {job_id} not found")
        return job

    @staticmethod
    def _check_lease(job: Job, lease_id: str) -> None:
        if job.lease_id != lease_id or job.status not in _HELD:
            raise Conflict(f"lease {lease_id} is no longer current for job {job.id} (job is {job.status.value})")

    async def _held_job(self, principal: Principal, miner_id: str, job_id: str, lease_id: str) -> Job:
        job = await self._owned_job(await self.miner(principal, miner_id), job_id)
        self._check_lease(job, lease_id)
        return job

    async def start(self, principal: Principal, miner_id: str, job_id: str, lease_id: str) -> JobDirective:
        job = await self._held_job(principal, miner_id, job_id, lease_id)
        if job.status is not JobStatus.ASSIGNED:
            return _directive(job)
        now = self._clock.now()
        changed = await self._lifecycle.move(
            job,
            Move.START,
            now,
            lease_id=lease_id,
            changes={
                "started_at": now,
                "lease_expires_at": now + timedelta(seconds=self._settings.lease_seconds),
            },
        )
        if changed is None:
            return _directive(await self._held_job(principal, miner_id, job_id, lease_id))
        return _directive(changed.job)

    async def progress(
        self, principal: Principal, miner_id: str, job_id: str, request: ProgressRequest
    ) -> JobDirective:
        miner = await self.miner(principal, miner_id)
        now = self._clock.now()
        updated = await self._jobs.record_progress(
            job_id,
            miner.id,
            request.lease_id,
            now,
            request.progress,
            request.message,
            request.estimated_completion,
            now + timedelta(seconds=self._settings.lease_seconds),
        )
        if updated is None:
            await self._held_job(principal, miner_id, job_id, request.lease_id)
            raise Conflict(f"lease {request.lease_id} is no longer current for job {job_id}")
        job, event = updated
        if event is not None:
            self._hub.publish(event)
        return _directive(job)

    async def logs(self, principal: Principal, miner_id: str, job_id: str, request: LogsRequest) -> JobDirective:
        job = await self._held_job(principal, miner_id, job_id, request.lease_id)
        if request.lines:
            lines = [line.model_dump() for line in request.lines]
            event = await self._jobs.append_event(job, "log", self._clock.now(), {"lines": lines})
            self._hub.publish(event)
        return _directive(job)

    async def input_file(self, principal: Principal, miner_id: str, job_id: str, lease_id: str) -> StoredFile:
        job = await self._held_job(principal, miner_id, job_id, lease_id)
        stored = await self._jobs.get_input_file(job.spec.input_file_id) if job.spec.input_file_id else None
        if stored is None:
            raise NotFound(f"job {job_id} has no input file")
        return stored

    async def upload(
        self,
        principal: Principal,
        miner_id: str,
        job_id: str,
        lease_id: str,
        path: str,
        chunks: AsyncIterable[bytes],
    ) -> UploadedFile:
        clean = check_package_path(path)
        job = await self._held_job(principal, miner_id, job_id, lease_id)
        return await self._uploads.store_result_file(job, lease_id, clean, chunks)

    # -- finishing ----------------------------------------------------------------------------------

    async def _checked_result(
        self, miner: Miner, job: Job, request: FinishRequest, partial: bool
    ) -> StoredResult | None:
        manifest = request.manifest
        if manifest is None:
            return None
        if manifest.job_id != job.id or manifest.miner_id != miner.id:
            raise InvalidInput("the manifest names another job or miner")
        document: dict[str, Any] = manifest.model_dump(mode="json")
        if not request.signature or not verify(miner.public_key, document, request.signature):
            raise InvalidInput("the manifest's signature does not verify with this miner's registered public key")
        uploaded = {f.path: f for f in await self._jobs.result_files(job.id, request.lease_id)}
        paths = PackagePaths()
        for entry in manifest.files:
            paths.add(entry.path)
            stored = uploaded.get(entry.path)
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
            created_at=self._clock.now(),
        )

    @staticmethod
    def _already_finished(job: Job, lease_id: str) -> JobDirective | None:
        """A retried finish of the same lease answers like the first one did (exactly-once effect)."""
        if job.status.is_terminal and job.result_lease_id == lease_id:
            return _directive(job)
        return None

    async def _finishing(
        self, principal: Principal, miner_id: str, job_id: str, lease_id: str
    ) -> tuple[Miner, Job] | JobDirective:
        """The miner and the job it is finishing, or the answer already given if this finish is a retry. The
        miner's ownership of the job comes first: a replay with another account's key is a 404, not a 200."""
        miner = await self.miner(principal, miner_id)
        job = await self._owned_job(miner, job_id)
        if (done := self._already_finished(job, lease_id)) is not None:
            return done
        self._check_lease(job, lease_id)
        return miner, job

    async def complete(self, principal: Principal, miner_id: str, job_id: str, request: FinishRequest) -> JobDirective:
        found = await self._finishing(principal, miner_id, job_id, request.lease_id)
        if isinstance(found, JobDirective):
            return found
        miner, job = found
        canceling = job.status is JobStatus.CANCELING
        result = await self._checked_result(miner, job, request, partial=canceling)
        now = self._clock.now()
        changes: dict[str, Any] = {
            "completed_at": now,
            "exit_code": request.exit_code,
            "results_state": "available" if result else "none",
            "result_lease_id": request.lease_id,
            **_reported_times(request),
        }
        if not canceling:
            changes["progress"] = 100
        move = Move.CONFIRM_CANCEL if canceling else Move.COMPLETE
        return await self._finish(job, move, request.lease_id, changes, result)

    async def fail(self, principal: Principal, miner_id: str, job_id: str, request: FailRequest) -> JobDirective:
        found = await self._finishing(principal, miner_id, job_id, request.lease_id)
        if isinstance(found, JobDirective):
            return found
        miner, job = found
        canceling = job.status is JobStatus.CANCELING
        now = self._clock.now()
        if not canceling and request.retryable and job.attempt < job.max_attempts:
            return await self._finish(
                job,
                Move.REQUEUE,
                request.lease_id,
                self.requeue_changes(f"attempt {job.attempt} failed on {miner.id}: {request.message}"),
                None,
            )
        result = await self._checked_result(miner, job, request, partial=True)
        changes: dict[str, Any] = {
            "completed_at": now,
            "exit_code": request.exit_code,
            "results_state": "available" if result else "none",
            "result_lease_id": request.lease_id,
            **_reported_times(request),
        }
        if canceling:
            return await self._finish(job, Move.CONFIRM_CANCEL, request.lease_id, changes, result)
        changes.update(failure_reason=request.reason.value, error=request.message or request.reason.value)
        return await self._finish(job, Move.FAIL, request.lease_id, changes, result)

    @staticmethod
    def requeue_changes(error: str) -> dict[str, Any]:
        return {
            "miner_id": None,
            "lease_id": None,
            "lease_expires_at": None,
            "assigned_at": None,
            "started_at": None,
            "progress": 0,
            "progress_message": None,
            "estimated_completion": None,
            "error": error,
        }

    async def _finish(
        self, job: Job, move: Move, lease_id: str, changes: dict[str, Any], result: StoredResult | None
    ) -> JobDirective:
        changed = await self._lifecycle.move(
            job, move, self._clock.now(), lease_id=lease_id, changes=changes, result=result
        )
        if changed is None:
            latest = await self._jobs.get_job(job.id)
            done = self._already_finished(latest, lease_id) if latest and latest.miner_id == job.miner_id else None
            if done is not None:
                return done  # a concurrent copy of this call won
            raise Conflict(f"lease {lease_id} is no longer current for job {job.id}")
        return _directive(changed.job)
