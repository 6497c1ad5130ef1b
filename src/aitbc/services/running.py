"""A claimed job while it runs: its start, progress, logs, input file and result uploads.

Each call is made under the job's current lease (see `leases`), and each keeps the lease alive or reports
on the job; none of them ends it (that is `finishing`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import timedelta

from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import Conflict, NotFound
from aitbc.domain.job import JobStatus
from aitbc.domain.manifest import check_package_path
from aitbc.domain.moves import Start
from aitbc.protocol.miners import JobDirective, LogsRequest, ProgressRequest, UploadedFile
from aitbc.services.leases import LeaseGuard, directive
from aitbc.services.lifecycle import Lifecycle
from aitbc.services.uploads import UploadService
from aitbc.settings import Settings
from aitbc.storage.interfaces import JobEventLog, JobLifecycleStore, ResultRecords, StoredFile
from aitbc.streaming.hub import EventHub


class RunService:
    def __init__(
        self,
        jobs: JobLifecycleStore,
        events: JobEventLog,
        files: ResultRecords,
        guard: LeaseGuard,
        lifecycle: Lifecycle,
        uploads: UploadService,
        hub: EventHub,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._jobs = jobs
        self._events = events
        self._files = files
        self._guard = guard
        self._lifecycle = lifecycle
        self._uploads = uploads
        self._hub = hub
        self._clock = clock
        self._settings = settings

    async def start(self, principal: Principal, miner_id: str, job_id: str, lease_id: str) -> JobDirective:
        job = await self._guard.held_job(principal, miner_id, job_id, lease_id)
        if job.status is not JobStatus.ASSIGNED:
            return directive(job)
        now = self._clock.now()
        begun = Start(started_at=now, lease_expires_at=now + timedelta(seconds=self._settings.lease_seconds))
        changed = await self._lifecycle.move(job, begun, now, lease_id=lease_id)
        if changed is None:
            return directive(await self._guard.held_job(principal, miner_id, job_id, lease_id))
        return directive(changed.job)

    async def progress(
        self, principal: Principal, miner_id: str, job_id: str, request: ProgressRequest
    ) -> JobDirective:
        miner = await self._guard.miner(principal, miner_id)
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
            await self._guard.held_job(principal, miner_id, job_id, request.lease_id)
            raise Conflict(f"lease {request.lease_id} is no longer current for job {job_id}")
        job, event = updated
        if event is not None:
            self._hub.publish(event)
        return directive(job)

    async def logs(self, principal: Principal, miner_id: str, job_id: str, request: LogsRequest) -> JobDirective:
        job = await self._guard.held_job(principal, miner_id, job_id, request.lease_id)
        if request.lines:
            # each line with its stream and, from a miner that stamps them, when the job printed it
            lines = [line.model_dump(mode="json", exclude_none=True) for line in request.lines]
            event = await self._events.append_event(job, "log", self._clock.now(), {"lines": lines})
            self._hub.publish(event)
        return directive(job)

    async def input_file(self, principal: Principal, miner_id: str, job_id: str, lease_id: str) -> StoredFile:
        job = await self._guard.held_job(principal, miner_id, job_id, lease_id)
        stored = await self._files.get_input_file(job.spec.input_file_id) if job.spec.input_file_id else None
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
        job = await self._guard.held_job(principal, miner_id, job_id, lease_id)
        return await self._uploads.store_result_file(job, lease_id, clean, chunks)
