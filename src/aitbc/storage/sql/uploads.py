"""The SQL store of stored uploads under their quotas, and of what the purge may remove."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, insert, not_, or_, select, union, update

from aitbc.domain.job import LEASED_STATUSES, TERMINAL_STATUSES, JobStatus
from aitbc.domain.package import ResultsState
from aitbc.storage.interfaces import ResultFile, StoredFile
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.one_statement import count, every_row, rows_changed
from aitbc.storage.sql.tables import accounts, input_files, jobs, result_files
from aitbc.storage.uploads import Recorded

_HELD = [s.value for s in LEASED_STATUSES | {JobStatus.CANCELING}]
_UNFINISHED = [s.value for s in JobStatus if s not in TERMINAL_STATUSES]
_AVAILABLE = ResultsState.AVAILABLE.value


def _result_file(row: Any) -> ResultFile:
    return ResultFile(
        job_id=row.job_id,
        lease_id=row.lease_id,
        path=row.path,
        size=row.size,
        sha256=row.sha256,
        blob_key=row.blob_key,
        crc32=row.crc32,
    )


def _past_input_retention(expired_before: Mapping[str, datetime]) -> Any:
    """Stored before the cutoff of the account's plan, and needed by no job that has yet to run or finish."""
    needed = exists().where(jobs.c.input_file_id == input_files.c.id, jobs.c.status.in_(_UNFINISHED))
    return and_(
        or_(
            *[
                and_(
                    input_files.c.account_id.in_(select(accounts.c.id).where(accounts.c.plan == plan)),
                    input_files.c.created_at < cutoff,
                )
                for plan, cutoff in expired_before.items()
            ]
        ),
        not_(needed),
    )


class SqlUploadStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def job_upload_bytes(self, job_id: str, lease_id: str, path: str) -> int:
        query = select(func.coalesce(func.sum(result_files.c.size), 0)).where(
            result_files.c.job_id == job_id,
            not_(and_(result_files.c.lease_id == lease_id, result_files.c.path == path)),
        )
        return await self._db.read(count(query))

    async def record_result_file(self, item: ResultFile, now: datetime, limit: int) -> Recorded:
        same = (
            result_files.c.job_id == item.job_id,
            result_files.c.lease_id == item.lease_id,
            result_files.c.path == item.path,
        )
        others = select(func.coalesce(func.sum(result_files.c.size), 0)).where(
            result_files.c.job_id == item.job_id, not_(and_(*same))
        )

        def work(connection: Connection) -> Recorded:
            # The job's row lock serialises its uploads on PostgreSQL; SQLite writes are serial anyway.
            job = connection.execute(
                select(jobs.c.status, jobs.c.lease_id).where(jobs.c.id == item.job_id).with_for_update()
            ).first()
            if job is None or job.status not in _HELD or job.lease_id != item.lease_id:
                return Recorded(stored=False, used=0, lease_held=False)
            used = int(connection.execute(others).scalar_one())
            if used + item.size > limit:
                return Recorded(stored=False, used=used)
            previous = connection.execute(select(result_files.c.blob_key).where(*same)).scalar_one_or_none()
            if previous is None:
                connection.execute(insert(result_files).values(**item.__dict__, created_at=now))
            else:
                connection.execute(
                    update(result_files)
                    .where(*same)
                    .values(
                        size=item.size, sha256=item.sha256, blob_key=item.blob_key, crc32=item.crc32, created_at=now
                    )
                )
            return Recorded(stored=True, used=used, replaced=previous)

        return await self._db.write(work)

    async def account_input_bytes(self, account_id: str) -> int:
        query = select(func.coalesce(func.sum(input_files.c.size), 0)).where(input_files.c.account_id == account_id)
        return await self._db.read(count(query))

    async def record_input_file(self, stored: StoredFile, limit: int) -> Recorded:
        held = select(func.coalesce(func.sum(input_files.c.size), 0)).where(
            input_files.c.account_id == stored.account_id
        )

        def work(connection: Connection) -> Recorded:
            connection.execute(select(accounts.c.id).where(accounts.c.id == stored.account_id).with_for_update())
            used = int(connection.execute(held).scalar_one())
            if used + stored.size > limit:
                return Recorded(stored=False, used=used)
            connection.execute(insert(input_files).values(**stored.__dict__))
            return Recorded(stored=True, used=used)

        return await self._db.write(work)

    async def unreferenced_result_files(self, recorded_by: datetime, limit: int) -> list[ResultFile]:
        uploading = and_(jobs.c.status.in_(_HELD), func.coalesce(jobs.c.lease_id, "") == result_files.c.lease_id)
        kept = and_(
            jobs.c.results_state == _AVAILABLE, func.coalesce(jobs.c.result_lease_id, "") == result_files.c.lease_id
        )
        query = (
            select(result_files)
            .select_from(result_files.outerjoin(jobs, jobs.c.id == result_files.c.job_id))
            .where(result_files.c.created_at <= recorded_by, or_(jobs.c.id.is_(None), not_(or_(uploading, kept))))
            .order_by(result_files.c.created_at)
            .limit(limit)
        )
        return [_result_file(row) for row in await self._db.read(every_row(query))]

    async def forget_result_file(self, item: ResultFile) -> None:
        forget = delete(result_files).where(
            result_files.c.job_id == item.job_id,
            result_files.c.lease_id == item.lease_id,
            result_files.c.path == item.path,
            result_files.c.blob_key == item.blob_key,
        )
        await self._db.write(rows_changed(forget))

    async def expired_input_files(self, expired_before: Mapping[str, datetime], limit: int) -> list[StoredFile]:
        if not expired_before:
            return []
        query = (
            select(input_files)
            .where(_past_input_retention(expired_before))
            .order_by(input_files.c.created_at)
            .limit(limit)
        )
        return [StoredFile(**row._mapping) for row in await self._db.read(every_row(query))]

    async def forget_input_file(self, file_id: str, expired_before: Mapping[str, datetime]) -> bool:
        if not expired_before:
            return False
        forget = delete(input_files).where(input_files.c.id == file_id, _past_input_retention(expired_before))
        return bool(await self._db.write(rows_changed(forget)))

    async def referenced_blob_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        query = union(
            select(result_files.c.blob_key).where(result_files.c.blob_key.in_(list(keys))),
            select(input_files.c.blob_key).where(input_files.c.blob_key.in_(list(keys))),
        )
        return {str(row[0]) for row in await self._db.read(every_row(query))}
