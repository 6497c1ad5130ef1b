"""The store interface of stored uploads as disk quotas see them: the bytes a job or an account holds,
recording an upload only while its owner stays under its quota, and finding what nothing refers to any more
(result files of dead leases, failed or retired jobs; input files past their plan's retention)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aitbc.storage.interfaces import ResultFile, StoredFile


@dataclass(frozen=True)
class Recorded:
    """What recording an upload did: `stored` is False (and nothing changed) if it would have taken its owner
    past `limit`, or if its lease is no longer held (`lease_held`); `used` is what the owner holds besides this
    upload; `replaced` is the blob key of the file this upload replaced (same job, lease and path), now
    unreferenced."""

    stored: bool
    used: int
    replaced: str | None = None
    lease_held: bool = True


class UploadStore(Protocol):
    async def job_upload_bytes(self, job_id: str, lease_id: str, path: str) -> int:
        """Bytes of the job's stored result files, every lease's, except the one at (lease_id, path)."""

    async def record_result_file(self, item: ResultFile, now: datetime, limit: int) -> Recorded:
        """Record (or replace) a result file unless the job's files would then pass `limit` bytes or its lease
        is no longer held (an upload that was still streaming when the job finished); serialised per job, so two
        uploads racing for the last bytes cannot both pass."""

    async def account_input_bytes(self, account_id: str) -> int: ...

    async def record_input_file(self, stored: StoredFile, limit: int) -> Recorded:
        """Record an input file unless the account's input files would then pass `limit` bytes; serialised
        per account."""

    async def unreferenced_result_files(self, recorded_by: datetime, limit: int) -> list[ResultFile]:
        """Result files recorded at or before `recorded_by` that neither a held lease is uploading nor an
        available result lists: files of requeued attempts, of jobs that ended without results, of retired
        results."""

    async def forget_result_file(self, item: ResultFile) -> None:
        """Delete the record of a result file, unless it was replaced by another blob meanwhile."""

    async def expired_input_files(self, expired_before: Mapping[str, datetime], limit: int) -> list[StoredFile]:
        """Input files stored before the cutoff of their account's plan (plan → cutoff) that no unfinished job
        needs."""

    async def forget_input_file(self, file_id: str, expired_before: Mapping[str, datetime]) -> bool:
        """Delete the record of an expired input file if it still qualifies; True if it was deleted."""

    async def referenced_blob_keys(self, keys: Sequence[str]) -> set[str]:
        """Those of `keys` that a result file or input file record refers to."""
