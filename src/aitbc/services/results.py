"""Results as clients fetch them: the package of a job (the files its signed manifest lists), downloads as
a streamed zip, one file or the checksum file, the coordinator-signed receipt, and deleting results.

A download is described before a byte is sent (size, ETag, media type) so the API can answer `HEAD`,
`If-None-Match` and `Range`; the bytes then stream from blob storage and are never held whole in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio

from aitbc.blobs.interface import BlobStore
from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock, isoformat_z
from aitbc.domain.errors import Conflict, Gone, NotFound
from aitbc.domain.job import Job
from aitbc.domain.manifest import canonical_bytes, check_package_path
from aitbc.domain.package import CHECKSUM_FILE, ResultsState, checksum_file, results_expire_at
from aitbc.domain.plans import Plan
from aitbc.domain.receipts import ReceiptFacts, check_receipt, receipt_document
from aitbc.protocol.jobs import JobView
from aitbc.protocol.results import CoordinatorKeyView, ReceiptView, ResultFileView, ResultPackageView, ResultsDeleted
from aitbc.services.coordinator_key import CoordinatorKey
from aitbc.services.jobs import JobService
from aitbc.services.views import job_view
from aitbc.services.zip_stream import ZipMember, build_layout, stream_range
from aitbc.settings import Settings
from aitbc.storage.interfaces import AccountStore, JobStore, MinerStore, ResultFile, StoredResult
from aitbc.storage.results import ResultStore, StoredReceipt
from aitbc.streaming.hub import EventHub

log = logging.getLogger(__name__)
ZIP_FORMAT = "aitbc-zip-1"
CRC_THREAD_THRESHOLD = 64 * 1024


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


@dataclass(frozen=True)
class Download:
    """One downloadable thing: its exact size and ETag up front, its bytes [start, end) on demand."""

    size: int
    etag: str
    media_type: str
    filename: str
    chunks: Callable[[int, int], AsyncIterator[bytes]]
    sha256: str | None = None


def _interval(start: datetime | None, end: datetime | None) -> dict[str, str | None]:
    return {"started_at": isoformat_z(start), "ended_at": isoformat_z(end)}


def _charge(job: Job) -> dict[str, Any] | None:
    """What billing settled when the job ended (in the same transaction as its last move), and which times it
    used: the miner's reported run, capped by the coordinator's observed start and end (null: none reported,
    or nothing billed)."""
    if job.cost is None:
        return None
    return {
        "amount": format(job.cost, "f"),
        "currency": "AITBC",
        "billed_seconds": job.billed_seconds,
        "times": {
            "observed_by_coordinator": _interval(job.started_at, job.completed_at),
            "reported_by_miner": _interval(job.reported_started_at, job.reported_ended_at),
            "billed": _interval(job.billed_from, job.billed_until),
        },
    }


class ResultService:
    def __init__(
        self,
        jobs: JobStore,
        results: ResultStore,
        accounts: AccountStore,
        miners: MinerStore,
        job_service: JobService,
        blobs: BlobStore,
        key: CoordinatorKey,
        hub: EventHub,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._jobs = jobs
        self._results = results
        self._accounts = accounts
        self._miners = miners
        self._job_service = job_service
        self._blobs = blobs
        self._key = key
        self._hub = hub
        self._clock = clock
        self._settings = settings

    # -- retention ----------------------------------------------------------------------------------

    async def plan_of(self, account_id: str) -> Plan:
        account = await self._accounts.get_account(account_id)
        return account.plan if account is not None else Plan.FREE

    def retention_days(self, plan: Plan) -> int:
        return self._settings.plan_limits[plan].retention_days

    async def expire_at(self, job: Job) -> datetime | None:
        """When the job's results expire: completion + its account's plan retention; None unless available."""
        if job.results_state != ResultsState.AVAILABLE.value:
            return None
        return results_expire_at(job.completed_at, self.retention_days(await self.plan_of(job.account_id)))

    async def job_view(self, job: Job, waiting_for: str | None = None) -> JobView:
        """The status object with `results_expire_at` filled in."""
        return job_view(job, waiting_for, await self.expire_at(job))

    async def job_views(self, jobs: Sequence[Job]) -> list[JobView]:
        """Status objects for a page of jobs, looking each account's plan up once."""
        plans: dict[str, Plan] = {}
        views = []
        for job in jobs:
            if job.account_id not in plans:
                plans[job.account_id] = await self.plan_of(job.account_id)
            expire_at = None
            if job.results_state == ResultsState.AVAILABLE.value:
                expire_at = results_expire_at(job.completed_at, self.retention_days(plans[job.account_id]))
            views.append(job_view(job, None, expire_at))
        return views

    # -- the package --------------------------------------------------------------------------------

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
        expire_at = await self.expire_at(job)
        if expire_at is not None and expire_at <= self._clock.now():
            raise Gone(f"the results of job {job.id} expired at {isoformat_z(expire_at)}")
        result = await self._jobs.get_result(job.id)
        if result is None:
            raise NotFound(f"job {job.id} has no results")
        uploaded = {f.path: f for f in await self._jobs.result_files(job.id, result.lease_id)}
        files: list[ResultFile] = []
        for entry in result.manifest.get("files", []):
            path = check_package_path(str(entry["path"]))
            stored = uploaded.get(path)
            if stored is None or stored.size != entry["size"] or stored.sha256 != entry["sha256"]:
                raise Conflict(f"job {job.id}: stored file {path} does not match its manifest")
            files.append(stored)
        return Package(job=job, result=result, files=tuple(files), expire_at=expire_at)

    def summary(self, package: Package) -> ResultPackageView:
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
            zip_bytes=build_layout(self._members(package, {}), package.modified).size,
            completed_at=job.completed_at,
            results_expire_at=package.expire_at,
            download_path=f"/v1/jobs/{job.id}/download",
            checksum_path=f"/v1/jobs/{job.id}/files/{CHECKSUM_FILE}",
        )

    # -- downloads ----------------------------------------------------------------------------------

    @staticmethod
    def _checksums(package: Package) -> bytes:
        return checksum_file((f.path, f.sha256) for f in package.files)

    def _members(self, package: Package, crc32s: dict[str, int]) -> list[ZipMember]:
        folder = package.job.id
        members = [
            ZipMember(name=f"{folder}/{f.path}", size=f.size, crc32=crc32s.get(f.path, 0), blob_key=f.blob_key)
            for f in package.files
        ]
        checksums = self._checksums(package)
        name = f"{folder}/{CHECKSUM_FILE}"
        members.append(ZipMember(name=name, size=len(checksums), crc32=zlib.crc32(checksums), data=checksums))
        return members

    async def _crc32s(self, package: Package) -> dict[str, int]:
        """CRC-32 of every file, computed by streaming each blob once and cached in the store."""
        job_id, lease_id = package.job.id, package.result.lease_id
        known = await self._results.crc32s(job_id, lease_id)
        for item in package.files:
            if item.path in known:
                continue
            value = 0
            async for chunk in self._blobs.read(item.blob_key):
                if len(chunk) >= CRC_THREAD_THRESHOLD:
                    value = await anyio.to_thread.run_sync(zlib.crc32, chunk, value)
                else:
                    value = zlib.crc32(chunk, value)
            await self._results.save_crc32(job_id, lease_id, item.path, value)
            known[item.path] = value
        return known

    def zip_download(self, package: Package) -> Download:
        """The whole package as a zip of stored entries under `<job_id>/`, with `output.sha256`. Its size
        depends only on names and sizes, so it is known before any CRC is computed."""
        size = build_layout(self._members(package, {}), package.modified).size
        tag = hashlib.sha256(f"{ZIP_FORMAT}:{package.job.id}:{package.result.manifest_sha256}".encode())

        async def chunks(start: int, end: int) -> AsyncIterator[bytes]:
            layout = build_layout(self._members(package, await self._crc32s(package)), package.modified)
            async for chunk in stream_range(layout, self._blobs.read, start, end):
                yield chunk

        return Download(
            size=size,
            etag=f'"{tag.hexdigest()[:40]}"',
            media_type="application/zip",
            filename=f"{package.job.id}.zip",
            chunks=chunks,
        )

    def file_download(self, package: Package, path: str) -> Download:
        if path == CHECKSUM_FILE:
            return self.checksum_download(package)
        clean = check_package_path(path)
        found = next((f for f in package.files if f.path == clean), None)
        if found is None:
            raise NotFound(f"the package of job {package.job.id} has no file {clean}")
        media_type = mimetypes.guess_type(clean)[0] or "application/octet-stream"
        if clean.endswith(".log"):
            media_type = "text/plain"
        blob_key = found.blob_key

        def chunks(start: int, end: int) -> AsyncIterator[bytes]:
            return self._blobs.read(blob_key, start, end)

        return Download(
            size=found.size,
            etag=f'"{found.sha256}"',
            media_type=media_type,
            filename=clean.rsplit("/", 1)[-1],
            chunks=chunks,
            sha256=found.sha256,
        )

    def checksum_download(self, package: Package) -> Download:
        content = self._checksums(package)
        digest = hashlib.sha256(content).hexdigest()

        async def chunks(start: int, end: int) -> AsyncIterator[bytes]:
            yield content[start:end]

        return Download(
            size=len(content),
            etag=f'"{digest}"',
            media_type="text/plain",
            filename=CHECKSUM_FILE,
            chunks=chunks,
            sha256=digest,
        )

    # -- receipts -----------------------------------------------------------------------------------

    async def receipt(self, principal: Principal, job_id: str) -> ReceiptView:
        return await self.receipt_of(await self._job_service.get(principal, job_id))

    async def receipt_of(self, job: Job) -> ReceiptView:
        result = await self._jobs.get_result(job.id)
        if result is None:
            if not job.is_terminal:
                raise Conflict(f"job {job.id} is {job.status.value}; its receipt is issued when it finishes")
            raise NotFound(f"job {job.id} ended without a signed result, so it has no receipt")
        stored = await self._results.get_receipt(job.id) or await self.issue_receipt(job, result)
        return ReceiptView(
            job_id=job.id,
            receipt=json.loads(stored.document),
            signature=stored.signature,
            key_id=stored.key_id,
            manifest=result.manifest,
        )

    async def issue_receipt(self, job: Job, result: StoredResult) -> StoredReceipt:
        """Sign the receipt of a finished job once; a racing issuer's receipt wins if it was stored first.
        It is only signed if the miner's signature over the manifest verifies with the miner's key."""
        miner = await self._miners.get_miner(result.miner_id)
        if miner is None:
            raise NotFound(f"miner {result.miner_id} of job {job.id} is not registered")
        files = result.manifest.get("files", [])
        facts = ReceiptFacts(
            job_id=job.id,
            account_id=job.account_id,
            miner_id=result.miner_id,
            miner_public_key=result.miner_public_key or miner.public_key,
            status=job.status.value,
            partial=result.partial,
            failure_reason=job.failure_reason.value if job.failure_reason else None,
            exit_code=job.exit_code,
            manifest_sha256=result.manifest_sha256,
            miner_signature=result.miner_signature,
            file_count=len(files),
            total_bytes=sum(int(f["size"]) for f in files),
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            gpu_type=job.spec.requirements.gpu_type,
            gpu_count=job.spec.requirements.gpu_count,
            attempts=job.attempt,
            charge=_charge(job),
            usage=result.usage,
        )
        document = receipt_document(facts, self._clock.now(), self._key.key_id)
        signature = self._key.sign(document)
        broken = [c for c in check_receipt(document, signature, self._key.public_key, result.manifest) if not c.ok]
        if broken:
            raise Conflict(f"cannot issue a receipt for job {job.id}: {broken[0].name} does not hold")
        receipt = StoredReceipt(
            job_id=job.id,
            document=canonical_bytes(document).decode(),
            signature=signature,
            key_id=self._key.key_id,
            issued_at=self._clock.now(),
        )
        return await self._results.add_receipt(receipt)

    # -- deleting -----------------------------------------------------------------------------------

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
        event = await self._jobs.append_event(job, "results", self._clock.now(), {"results": job.results_state})
        self._hub.publish(event)
        await self.purge(job.id)

    async def purge(self, job_id: str) -> int:
        removed = await self._blobs.delete_prefix(f"results/{job_id}")
        await self._results.finish_purge(job_id)
        return removed

    async def issue_missing_receipts(self, since: datetime, limit: int) -> int:
        """Sign the receipts of jobs that finished since `since` and have none yet (receipts are otherwise
        signed on first request); a job whose chain does not verify is logged and skipped."""
        issued = 0
        for job_id in await self._results.unreceipted(since, limit):
            job = await self._jobs.get_job(job_id)
            result = await self._jobs.get_result(job_id)
            if job is None or result is None:
                continue
            try:
                await self.issue_receipt(job, result)
            except (Conflict, NotFound) as error:
                log.warning("no receipt for job %s: %s", job_id, error.message)
                continue
            issued += 1
        return issued

    def coordinator_key(self) -> CoordinatorKeyView:
        return CoordinatorKeyView(public_key=self._key.public_key, key_id=self._key.key_id)
