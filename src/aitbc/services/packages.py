"""A job's result package: the files its signed manifest lists, checked against what was uploaded, or why
there is none (deleted, expired, still running, never uploaded); and how it is laid out as a zip.

Every way of reading results (the listing, the zip, one file, a share link) goes through `package_of`, so
they all refuse the same packages with the same answer.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from aitbc.blobs.zip_stream import ZipLayout, ZipMember, build_layout
from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock, isoformat_z
from aitbc.domain.errors import Conflict, Gone, NotFound
from aitbc.domain.job import Job
from aitbc.domain.manifest import check_package_path
from aitbc.domain.package import CHECKSUM_FILE, ResultsState, checksum_file
from aitbc.protocol.results import ResultFileView, ResultPackageView
from aitbc.services.jobs import JobService
from aitbc.services.retention import Retention
from aitbc.storage.interfaces import ResultFile, ResultRecords, StoredResult


@dataclass(frozen=True)
class Package:
    """A job's downloadable results: the files its manifest lists, in manifest order, with their blobs."""

    job: Job
    result: StoredResult
    files: tuple[ResultFile, ...]
    expire_at: datetime | None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def modified(self) -> datetime:
        return self.job.completed_at or self.result.created_at

    def checksums(self) -> bytes:
        """The `output.sha256` file: every file's SHA-256, as `sha256sum -c` reads it."""
        return checksum_file((f.path, f.sha256) for f in self.files)

    def zip_layout(self, crc32s: Mapping[str, int] | None = None) -> ZipLayout:
        """The package as a zip of stored entries under `<job_id>/`, with `output.sha256` last. Its size depends
        only on names and sizes; the CRC-32s (stored with each file, or `crc32s` by path) go in the headers."""
        known = crc32s or {}
        folder = self.job.id
        members = [
            ZipMember(
                name=f"{folder}/{f.path}",
                size=f.size,
                crc32=known.get(f.path, f.crc32 or 0),
                blob_key=f.blob_key,
            )
            for f in self.files
        ]
        checksums = self.checksums()
        name = f"{folder}/{CHECKSUM_FILE}"
        members.append(ZipMember(name=name, size=len(checksums), crc32=zlib.crc32(checksums), data=checksums))
        return build_layout(members, self.modified)


class PackageService:
    def __init__(self, files: ResultRecords, job_service: JobService, retention: Retention, clock: Clock) -> None:
        self._files = files
        self._job_service = job_service
        self._retention = retention
        self._clock = clock

    async def package(self, principal: Principal, job_id: str) -> Package:
        return await self.package_of(await self._job_service.get(principal, job_id))

    async def package_of(self, job: Job) -> Package:
        """The job's package, or why there is none: 410 deleted / expired, 409 still running, 404 none."""
        state = ResultsState(job.results_state)
        if state is ResultsState.DELETED:
            raise Gone(f"the results of job {job.id} were deleted; the job stays in your history")
        if state is ResultsState.EXPIRED:
            raise Gone(f"the results of job {job.id} expired under the account's retention and were removed")
        if state is ResultsState.NONE:
            if not job.is_terminal:
                raise Conflict(f"job {job.id} is {job.status.value}; its results can be fetched once it finishes")
            raise NotFound(f"job {job.id} has no results: it ended ({job.status.value}) without uploading any")
        expire_at = await self._retention.expire_at(job)
        if expire_at is not None and expire_at <= self._clock.now():
            raise Gone(f"the results of job {job.id} expired at {isoformat_z(expire_at)}")
        result = await self._files.get_result(job.id)
        if result is None:
            raise NotFound(f"job {job.id} has no results")
        uploaded = {f.path: f for f in await self._files.result_files(job.id, result.lease_id)}
        files: list[ResultFile] = []
        for entry in result.manifest.get("files", []):
            path = check_package_path(str(entry["path"]))
            stored = uploaded.get(path)
            if stored is None or stored.size != entry["size"] or stored.sha256 != entry["sha256"]:
                raise Conflict(f"job {job.id}: stored file {path} does not match its manifest")
            files.append(stored)
        return Package(job=job, result=result, files=tuple(files), expire_at=expire_at)

    async def summary(self, principal: Principal, job_id: str) -> ResultPackageView:
        """What the package holds and until when it is kept, with where to download it."""
        package = await self.package(principal, job_id)
        job = package.job
        return ResultPackageView(
            job_id=job.id,
            status=job.status,
            results=job.results_state,
            partial=package.result.partial,
            miner_id=package.result.miner_id,
            manifest_sha256=package.result.manifest_sha256,
            files=[ResultFileView(path=f.path, size=f.size, sha256=f.sha256) for f in package.files],
            total_bytes=package.total_bytes,
            zip_bytes=package.zip_layout().size,
            completed_at=job.completed_at,
            results_expire_at=package.expire_at,
            download_path=f"/v1/jobs/{job.id}/download",
            checksum_path=f"/v1/jobs/{job.id}/files/{CHECKSUM_FILE}",
        )
