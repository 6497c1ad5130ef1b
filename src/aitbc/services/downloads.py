"""Downloads of a package: the whole of it as a zip, one file, or the checksum file.

A download is described before a byte is sent (size, ETag, media type) so the API can answer `HEAD`,
`If-None-Match` and `Range`; the bytes then stream from blob storage and are never held whole in memory.
The zip's CRC-32s are the ones computed while each file was uploaded and kept with its record, so a zip
download reads every blob once; a file recorded before that (no CRC yet) has its CRC computed by streaming
its blob once, on its first zip download, and kept.
"""

from __future__ import annotations

import hashlib
import mimetypes
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio

from aitbc.blobs.interface import BlobStore
from aitbc.blobs.zip_stream import stream_range
from aitbc.domain.accounts import Principal
from aitbc.domain.errors import Conflict, Gone, NotFound
from aitbc.domain.job import Job
from aitbc.domain.manifest import check_package_path
from aitbc.domain.package import CHECKSUM_FILE, ResultsState
from aitbc.services.packages import Package, PackageService
from aitbc.storage.results import ResultStore

ZIP_FORMAT = "aitbc-zip-1"
CRC_THREAD_THRESHOLD = 64 * 1024
# The main output a waited-for job's answer carries inline (`JobView.result`); a larger one is downloaded.
MAIN_OUTPUT = "result.txt"
MAX_INLINE_RESULT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Download:
    """One downloadable thing: its exact size and ETag up front, its bytes [start, end) on demand."""

    size: int
    etag: str
    media_type: str
    filename: str
    chunks: Callable[[int, int], AsyncIterator[bytes]]
    sha256: str | None = None


class DownloadService:
    def __init__(self, packages: PackageService, results: ResultStore, blobs: BlobStore) -> None:
        self._packages = packages
        self._results = results
        self._blobs = blobs

    async def zip(self, principal: Principal, job_id: str) -> Download:
        return self.zip_of(await self._packages.package(principal, job_id))

    async def file(self, principal: Principal, job_id: str, path: str) -> Download:
        """One file of the package by its path, or `output.sha256`."""
        package = await self._packages.package(principal, job_id)
        if path == CHECKSUM_FILE:
            return self.checksum_of(package)
        return self.file_of(package, path)

    async def main_output(self, job: Job) -> str | None:
        """The text of the job's result.txt, for an answer that carries it; None when the job has no results
        (yet, or any more), or its result.txt is missing, over `MAX_INLINE_RESULT_BYTES` or not UTF-8."""
        if job.results_state != ResultsState.AVAILABLE.value:
            return None
        try:
            package = await self._packages.package_of(job)
        except (Conflict, Gone, NotFound):
            return None
        found = next((f for f in package.files if f.path == MAIN_OUTPUT), None)
        if found is None or found.size > MAX_INLINE_RESULT_BYTES:
            return None
        data = b"".join([chunk async for chunk in self._blobs.read(found.blob_key)])
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def zip_of(self, package: Package) -> Download:
        """The whole package as a zip (see `Package.zip_layout`); its size is known before any CRC is."""
        size = package.zip_layout().size
        tag = hashlib.sha256(f"{ZIP_FORMAT}:{package.job.id}:{package.result.manifest_sha256}".encode())

        async def chunks(start: int, end: int) -> AsyncIterator[bytes]:
            layout = package.zip_layout(await self._missing_crc32s(package))
            async for chunk in stream_range(layout, self._blobs.read, start, end):
                yield chunk

        return Download(
            size=size,
            etag=f'"{tag.hexdigest()[:40]}"',
            media_type="application/zip",
            filename=f"{package.job.id}.zip",
            chunks=chunks,
        )

    def file_of(self, package: Package, path: str) -> Download:
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

    @staticmethod
    def checksum_of(package: Package) -> Download:
        content = package.checksums()
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

    async def _missing_crc32s(self, package: Package) -> dict[str, int]:
        """The CRC-32 of each file recorded without one, by path: its blob streamed once, the value kept."""
        computed: dict[str, int] = {}
        for item in package.files:
            if item.crc32 is not None:
                continue
            value = 0
            async for chunk in self._blobs.read(item.blob_key):
                if len(chunk) >= CRC_THREAD_THRESHOLD:
                    value = await anyio.to_thread.run_sync(zlib.crc32, chunk, value)
                else:
                    value = zlib.crc32(chunk, value)
            await self._results.save_crc32(item, value)
            computed[item.path] = value
        return computed
