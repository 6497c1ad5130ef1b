"""The store interfaces of results beyond the miner's upload: CRC-32s of files recorded without one, receipts,
share links, and the state changes of a job's results (delete, expire) with the blob purges they queue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aitbc.domain.job import Job
from aitbc.domain.package import ResultsState
from aitbc.storage.interfaces import ResultFile


@dataclass(frozen=True)
class StoredReceipt:
    job_id: str
    document: str  # the canonical JSON that was signed, kept byte for byte
    signature: str
    key_id: str
    issued_at: datetime


@dataclass(frozen=True)
class Share:
    id: str
    job_id: str
    account_id: str
    token_hash: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    download_count: int
    last_download_at: datetime | None


@dataclass(frozen=True)
class Purge:
    """Blobs of a job whose results were deleted or expired, still to be removed from blob storage."""

    job_id: str
    queued_at: datetime


class ResultStore(Protocol):
    async def save_crc32(self, item: ResultFile, crc32: int) -> None:
        """Keep the CRC-32 of a result file recorded without one (unless its record changed meanwhile)."""

    async def get_receipt(self, job_id: str) -> StoredReceipt | None: ...

    async def add_receipt(self, receipt: StoredReceipt) -> StoredReceipt:
        """Store a receipt unless the job has one already; return the one that is stored."""

    async def unreceipted(self, since: datetime, limit: int) -> list[str]:
        """Ids of jobs whose signed result was stored since `since` and that have no receipt, oldest first."""

    async def retire_results(
        self, job_id: str, state: ResultsState, now: datetime, expired_before: Mapping[str, datetime] | None = None
    ) -> Job | None:
        """Mark available results `deleted` or `expired`, revoke the job's share links and queue the purge of
        its blobs, in one transaction; None if the results were not available (or, with `expired_before`
        (plan → cutoff), if the job no longer qualifies). A compare-and-set: of two racers one wins."""

    async def expired_results(self, expired_before: Mapping[str, datetime], limit: int) -> list[Job]:
        """Jobs with available results completed before the cutoff of their account's plan."""

    async def queued_purges(self, queued_before: datetime, limit: int) -> list[Purge]: ...

    async def finish_purge(self, job_id: str) -> None: ...


class ShareStore(Protocol):
    async def add_share(self, share: Share) -> None: ...

    async def share_by_token_hash(self, token_hash: str) -> Share | None: ...

    async def shares(self, job_id: str) -> list[Share]: ...

    async def revoke_share(self, job_id: str, share_id: str, now: datetime) -> Share | None:
        """Revoke one share of the job (idempotent); None if the job has no such share."""

    async def revoke_shares(self, job_id: str, now: datetime) -> int:
        """Revoke every live (unrevoked, unexpired) share of the job; return how many."""

    async def count_download(self, share_id: str, now: datetime) -> None: ...
