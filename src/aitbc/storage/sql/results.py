"""The SQL stores of results: late CRC-32s, receipts, retiring results (delete / expire) with their purge
queue, and share links."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from aitbc.domain.job import Job
from aitbc.domain.package import ResultsState
from aitbc.storage.interfaces import ResultFile
from aitbc.storage.results import Purge, Share, StoredReceipt
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.one_statement import every_row, first, rows_changed
from aitbc.storage.sql.rows import job_from_row
from aitbc.storage.sql.tables import (
    accounts,
    job_results,
    jobs,
    receipts,
    result_files,
    result_purges,
    result_shares,
)

_AVAILABLE = ResultsState.AVAILABLE.value


def _past_retention(expired_before: Mapping[str, datetime]) -> Any:
    """Completed before the cutoff of the job's account's plan (plans not listed never expire)."""
    return or_(
        *[
            and_(
                jobs.c.account_id.in_(select(accounts.c.id).where(accounts.c.plan == plan)),
                jobs.c.completed_at < cutoff,
            )
            for plan, cutoff in expired_before.items()
        ]
    )


class SqlResultStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def save_crc32(self, item: ResultFile, crc32: int) -> None:
        query = (
            update(result_files)
            .where(
                result_files.c.job_id == item.job_id,
                result_files.c.lease_id == item.lease_id,
                result_files.c.path == item.path,
                result_files.c.blob_key == item.blob_key,
                result_files.c.crc32.is_(None),
            )
            .values(crc32=crc32)
        )
        await self._db.write(rows_changed(query))

    async def get_receipt(self, job_id: str) -> StoredReceipt | None:
        row = await self._db.read(first(select(receipts).where(receipts.c.job_id == job_id)))
        return StoredReceipt(**row._mapping) if row else None

    async def add_receipt(self, receipt: StoredReceipt) -> StoredReceipt:
        try:
            await self._db.write(rows_changed(insert(receipts).values(**receipt.__dict__)))
        except IntegrityError:
            existing = await self.get_receipt(receipt.job_id)
            if existing is None:
                raise
            return existing
        return receipt

    async def unreceipted(self, since: datetime, limit: int) -> list[str]:
        query = (
            select(job_results.c.job_id)
            .outerjoin(receipts, receipts.c.job_id == job_results.c.job_id)
            .where(receipts.c.job_id.is_(None), job_results.c.created_at >= since)
            .order_by(job_results.c.created_at)
            .limit(limit)
        )
        return [str(row.job_id) for row in await self._db.read(every_row(query))]

    async def retire_results(
        self, job_id: str, state: ResultsState, now: datetime, expired_before: Mapping[str, datetime] | None = None
    ) -> Job | None:
        guarded = update(jobs).where(jobs.c.id == job_id, jobs.c.results_state == _AVAILABLE)
        if expired_before is not None:
            guarded = guarded.where(_past_retention(expired_before))
        retire = guarded.values(results_state=state.value, updated_at=now).returning(*jobs.c)

        def work(connection: Connection) -> Row[Any] | None:
            row = connection.execute(retire).first()
            if row is None:
                return None
            connection.execute(
                update(result_shares)
                .where(result_shares.c.job_id == job_id, result_shares.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            connection.execute(insert(result_purges).values(job_id=job_id, queued_at=now))
            return row

        row = await self._db.write(work)
        return job_from_row(row) if row is not None else None

    async def expired_results(self, expired_before: Mapping[str, datetime], limit: int) -> list[Job]:
        if not expired_before:
            return []
        query = (
            select(jobs)
            .where(jobs.c.results_state == _AVAILABLE, _past_retention(expired_before))
            .order_by(jobs.c.completed_at)
            .limit(limit)
        )
        return [job_from_row(row) for row in await self._db.read(every_row(query))]

    async def queued_purges(self, queued_before: datetime, limit: int) -> list[Purge]:
        query = (
            select(result_purges)
            .where(result_purges.c.queued_at < queued_before)
            .order_by(result_purges.c.queued_at)
            .limit(limit)
        )
        return [Purge(**row._mapping) for row in await self._db.read(every_row(query))]

    async def finish_purge(self, job_id: str) -> None:
        await self._db.write(rows_changed(delete(result_purges).where(result_purges.c.job_id == job_id)))


class SqlShareStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add_share(self, share: Share) -> None:
        await self._db.write(rows_changed(insert(result_shares).values(**share.__dict__)))

    async def share_by_token_hash(self, token_hash: str) -> Share | None:
        query = select(result_shares).where(result_shares.c.token_hash == token_hash)
        row = await self._db.read(first(query))
        return Share(**row._mapping) if row else None

    async def shares(self, job_id: str) -> list[Share]:
        query = (
            select(result_shares)
            .where(result_shares.c.job_id == job_id)
            .order_by(result_shares.c.created_at, result_shares.c.id)
        )
        return [Share(**row._mapping) for row in await self._db.read(every_row(query))]

    async def revoke_share(self, job_id: str, share_id: str, now: datetime) -> Share | None:
        where = (result_shares.c.job_id == job_id, result_shares.c.id == share_id)
        revoke = update(result_shares).where(*where, result_shares.c.revoked_at.is_(None)).values(revoked_at=now)

        def work(connection: Connection) -> Row[Any] | None:
            connection.execute(revoke)
            return connection.execute(select(result_shares).where(*where)).first()

        row = await self._db.write(work)
        return Share(**row._mapping) if row else None

    async def revoke_shares(self, job_id: str, now: datetime) -> int:
        revoke = (
            update(result_shares)
            .where(
                result_shares.c.job_id == job_id,
                result_shares.c.revoked_at.is_(None),
                result_shares.c.expires_at > now,
            )
            .values(revoked_at=now)
        )
        return await self._db.write(rows_changed(revoke))

    async def count_download(self, share_id: str, now: datetime) -> None:
        counted = (
            update(result_shares)
            .where(result_shares.c.id == share_id)
            .values(download_count=result_shares.c.download_count + 1, last_download_at=now)
        )
        await self._db.write(rows_changed(counted))
