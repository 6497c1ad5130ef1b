"""The purge of blobs no available result refers to: result files of requeued attempts, of jobs that ended
without results or whose results were retired, files a manifest did not list, input files past their plan's
retention, and blobs no record names at all (a crash between writing a blob and recording it, or mid-write).

A result file is recorded only once its blob is complete and its lease was held, so a recorded file that no
held lease or available result refers to is garbage at once (a dead lease cannot upload again): it is purged
on the next pass, which also frees its bytes from the job's upload quota. An upload in flight has no record
yet, only a blob: a blob no record names is purged only after it stayed unchanged (same size and
modification stamp) for the grace period on the injected clock, so an upload still streaming, or one about
to be recorded, is never purged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from aitbc.blobs.interface import BlobEntry, BlobStore
from aitbc.domain.clock import Clock
from aitbc.settings import Settings
from aitbc.storage.uploads import UploadStore

log = logging.getLogger(__name__)
BATCH = 500
BLOB_PREFIXES = ("results", "inputs")


@dataclass(frozen=True)
class _Sighting:
    """When a blob was first seen unreferenced, and what it looked like then."""

    since: datetime
    size: int
    version: int


@dataclass
class PurgeReport:
    result_files: int = 0
    input_files: int = 0
    orphan_blobs: int = 0


class BlobPurger:
    def __init__(self, uploads: UploadStore, blobs: BlobStore, clock: Clock, settings: Settings) -> None:
        self._uploads = uploads
        self._blobs = blobs
        self._clock = clock
        self._settings = settings
        self._unreferenced: dict[str, _Sighting] = {}
        self._last_scan: datetime | None = None

    @property
    def _grace(self) -> timedelta:
        return timedelta(seconds=self._settings.purge_grace_seconds)

    async def run_once(self, input_cutoffs: Mapping[str, datetime]) -> PurgeReport:
        """One pass; `input_cutoffs` (plan → moment) says which input files are past their retention."""
        now = self._clock.now()
        report = PurgeReport()
        report.result_files = await self.purge_result_files(now)
        report.input_files = await self.expire_input_files(input_cutoffs)
        if self._last_scan is None or now - self._last_scan >= timedelta(
            seconds=self._settings.blob_scan_interval_seconds
        ):
            report.orphan_blobs = await self.purge_orphan_blobs(now)
            self._last_scan = now
        return report

    async def purge_result_files(self, now: datetime) -> int:
        """Blob first, then its record: a crash in between leaves the record, and the next pass retries."""
        purged = 0
        while True:
            due = await self._uploads.unreferenced_result_files(now, BATCH)
            for item in due:
                await self._blobs.delete(item.blob_key)
                await self._uploads.forget_result_file(item)
                purged += 1
            if len(due) < BATCH:
                return purged

    async def expire_input_files(self, cutoffs: Mapping[str, datetime]) -> int:
        """Record first, then its blob: once forgotten no job can be submitted with it; a crash in between
        leaves a blob no record names, which the scan removes."""
        expired = 0
        while True:
            due = await self._uploads.expired_input_files(cutoffs, BATCH)
            for stored in due:
                if await self._uploads.forget_input_file(stored.id, cutoffs):
                    await self._blobs.delete(stored.blob_key)
                    expired += 1
            if len(due) < BATCH:
                return expired

    async def purge_orphan_blobs(self, now: datetime) -> int:
        """Blobs no record names that stayed unchanged for the grace period since first seen so."""
        seen: set[str] = set()
        purged = 0
        batch: list[BlobEntry] = []
        for prefix in BLOB_PREFIXES:
            async for entry in self._blobs.entries(prefix):
                batch.append(entry)
                if len(batch) >= BATCH:
                    purged += await self._check(batch, now, seen)
                    batch = []
        purged += await self._check(batch, now, seen)
        for key in set(self._unreferenced) - seen:
            del self._unreferenced[key]  # recorded meanwhile, or gone
        return purged

    async def _check(self, batch: list[BlobEntry], now: datetime, seen: set[str]) -> int:
        referenced = await self._uploads.referenced_blob_keys([entry.key for entry in batch])
        purged = 0
        for entry in batch:
            if entry.key in referenced:
                continue
            seen.add(entry.key)
            sighting = self._unreferenced.get(entry.key)
            if sighting is None or (sighting.size, sighting.version) != (entry.size, entry.version):
                self._unreferenced[entry.key] = _Sighting(since=now, size=entry.size, version=entry.version)
            elif now - sighting.since >= self._grace:
                await self._blobs.delete(entry.key)
                del self._unreferenced[entry.key]
                seen.discard(entry.key)
                purged += 1
        return purged
