"""Stored uploads under their disk quotas: a miner's result files under the operator's limit per job (every
attempt's files, listed in a manifest or not, count), a client's input files under their plan's quota.

An upload streams into blob storage with its owner's remaining room as the limit, so one that would pass it
is stopped as soon as it does (413, its partial blob removed); it is then recorded only if the owner is still
under quota, checked again under a lock, so racing uploads cannot both squeeze in. A refused upload leaves
nothing stored.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterable

from pydantic import ByteSize

from aitbc.blobs.interface import BlobStore
from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import Conflict, InvalidInput, PayloadTooLarge
from aitbc.domain.identifiers import new_file_id
from aitbc.domain.job import Job
from aitbc.protocol.jobs import FileView
from aitbc.protocol.miners import UploadedFile
from aitbc.settings import Settings
from aitbc.storage.interfaces import ResultFile, StoredFile
from aitbc.storage.uploads import UploadStore


def describe_size(size: int) -> str:
    """Bytes as people read them: 10737418240 → 10.0GiB."""
    return ByteSize(size).human_readable(decimal=False)


def result_blob_key(job_id: str, lease_id: str, path: str) -> str:
    """A fresh key per upload, so a replacement never overwrites bytes still recorded for the path."""
    name = hashlib.sha256(path.encode()).hexdigest()[:40]
    return f"results/{job_id}/{lease_id}/{name}.{secrets.token_hex(8)}"


class UploadService:
    def __init__(self, uploads: UploadStore, blobs: BlobStore, clock: Clock, settings: Settings) -> None:
        self._uploads = uploads
        self._blobs = blobs
        self._clock = clock
        self._settings = settings

    def _job_quota_message(self, job: Job, path: str, used: int) -> str:
        limit = self._settings.max_job_upload_bytes
        return (
            f"upload refused: the files of job {job.id} may total at most {describe_size(limit)} (this coordinator's "
            f"limit per job, every attempt's files counted) and {describe_size(used)} are already stored for it; "
            f"nothing was stored for {path}"
        )

    async def store_result_file(self, job: Job, lease_id: str, path: str, chunks: AsyncIterable[bytes]) -> UploadedFile:
        """Store one result file of the job's lease (the caller checked that the lease is held)."""
        limit = self._settings.max_job_upload_bytes
        used = await self._uploads.job_upload_bytes(job.id, lease_id, path)
        room = limit - used
        if room <= 0:
            raise PayloadTooLarge(self._job_quota_message(job, path, used))
        per_file = self._settings.max_result_file_bytes
        key = result_blob_key(job.id, lease_id, path)
        try:
            info = await self._blobs.write(key, chunks, min(room, per_file))
        except PayloadTooLarge as error:
            if room < per_file:
                raise PayloadTooLarge(self._job_quota_message(job, path, used)) from error
            raise PayloadTooLarge(
                f"upload refused: {path} is over the limit of {describe_size(per_file)} per file; nothing was stored"
            ) from error
        item = ResultFile(
            job_id=job.id,
            lease_id=lease_id,
            path=path,
            size=info.size,
            sha256=info.sha256,
            blob_key=key,
            crc32=info.crc32,
        )
        recorded = await self._uploads.record_result_file(item, self._clock.now(), limit)
        if not recorded.stored:
            await self._blobs.delete(key)
            if not recorded.lease_held:
                raise Conflict(
                    f"lease {lease_id} is no longer current for job {job.id} (it moved on while {path} was "
                    "uploading); nothing was stored"
                )
            raise PayloadTooLarge(self._job_quota_message(job, path, recorded.used))
        if recorded.replaced is not None and recorded.replaced != key:
            await self._blobs.delete(recorded.replaced)
        return UploadedFile(path=path, size=info.size, sha256=info.sha256)

    def _input_quota_message(self, principal: Principal, used: int) -> str:
        plan = principal.account.plan
        limits = self._settings.plan_limits[plan]
        return (
            f"upload refused: the {plan.value} plan keeps at most {describe_size(limits.input_storage_bytes)} of "
            f"input files and this account already stores {describe_size(used)}; input files are deleted "
            f"{limits.retention_days} days after upload, or move to a larger plan; nothing was stored"
        )

    async def upload_input_file(self, principal: Principal, name: str, chunks: AsyncIterable[bytes]) -> FileView:
        """`store_input_file`, answered as the client sees it: the id to pass as `input_file_id`."""
        stored = await self.store_input_file(principal, name, chunks)
        return FileView(
            file_id=stored.id, name=stored.name, size=stored.size, sha256=stored.sha256, created_at=stored.created_at
        )

    async def store_input_file(self, principal: Principal, name: str, chunks: AsyncIterable[bytes]) -> StoredFile:
        """Store a client's input file under the per-file limit and the account plan's quota."""
        clean = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
        if not clean or clean in (".", "..") or len(clean) > 255 or any(ord(c) < 32 for c in clean):
            raise InvalidInput("give the file a plain name (no folders, no control characters)")
        account_id = principal.account.id
        limit = self._settings.plan_limits[principal.account.plan].input_storage_bytes
        used = await self._uploads.account_input_bytes(account_id)
        room = limit - used
        if room <= 0:
            raise PayloadTooLarge(self._input_quota_message(principal, used))
        per_file = self._settings.max_input_file_bytes
        file_id = new_file_id()
        key = f"inputs/{account_id}/{file_id}"
        try:
            info = await self._blobs.write(key, chunks, min(room, per_file))
        except PayloadTooLarge as error:
            if room < per_file:
                raise PayloadTooLarge(self._input_quota_message(principal, used)) from error
            raise PayloadTooLarge(
                f"upload refused: an input file may be at most {describe_size(per_file)}; nothing was stored"
            ) from error
        stored = StoredFile(
            id=file_id,
            account_id=account_id,
            name=clean,
            size=info.size,
            sha256=info.sha256,
            blob_key=key,
            created_at=self._clock.now(),
        )
        recorded = await self._uploads.record_input_file(stored, limit)
        if not recorded.stored:
            await self._blobs.delete(key)
            raise PayloadTooLarge(self._input_quota_message(principal, recorded.used))
        return stored
