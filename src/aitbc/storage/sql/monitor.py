"""The monitoring read model: an account's queue places, recent throughput and waits, and what live miners hold.

Every statement is a range on an index and bounded: the account's oldest pending jobs on
`ix_jobs_account_status_created_id`; the jobs ahead of one in the claim order (`SqlJobStore.queued`: priority
first, then age, then id) on `ix_jobs_queue`, three ranges each stopped at a cap; the window's jobs, per
status, on `ix_jobs_account_status_created_id`; the latest jobs on `ix_jobs_account_created`; the jobs miners
hold on `ix_jobs_miner_status`. Nothing counts an account's whole history (its totals are in `job_counts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, literal, select

from aitbc.domain.job import LEASED_STATUSES, JobStatus
from aitbc.storage.interfaces import JobActivity, QueuePlace
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.one_statement import count
from aitbc.storage.sql.tables import accounts, jobs

PENDING = JobStatus.PENDING.value
EVERY_STATUS = [status.value for status in JobStatus]
HELD = sorted(status.value for status in LEASED_STATUSES | {JobStatus.CANCELING})  # a miner still holds the job


def _capped(condition: Sequence[Any]) -> Any:
    """How many pending rows of the bound type meet `condition`, counted up to the bound cap."""
    rows = (
        select(literal(1))
        .where(jobs.c.status == PENDING, jobs.c.type == bindparam("type"), *condition)
        .limit(bindparam("cap"))
    )
    return select(func.count()).select_from(rows.subquery()).scalar_subquery()


# The three ranges of the claim order before a job: a higher priority; the same, older; the same age, lower id.
_AHEAD = select(
    _capped([jobs.c.priority_rank > bindparam("rank")])
    + _capped([jobs.c.priority_rank == bindparam("rank"), jobs.c.created_at < bindparam("created_at")])
    + _capped(
        [
            jobs.c.priority_rank == bindparam("rank"),
            jobs.c.created_at == bindparam("created_at"),
            jobs.c.id < bindparam("job_id"),
        ]
    )
)
_OLDEST_PENDING = (
    select(jobs.c.id, jobs.c.type, jobs.c.priority, jobs.c.priority_rank, jobs.c.created_at)
    .where(jobs.c.account_id == bindparam("account_id"), jobs.c.status == PENDING)
    .order_by(jobs.c.created_at, jobs.c.id)
    .limit(bindparam("limit"))
)
_EVENT_SEQ = select(accounts.c.event_seq).where(accounts.c.id == bindparam("account_id"))


def _count_in(status: str, *conditions: Any) -> Any:
    """How many jobs in `status` meet `conditions`: the status an equality, so the count is a range on an index
    whose next column is the status (an IN over every status would leave PostgreSQL filtering the whole
    account's, or miner's, entries)."""
    return select(func.count()).select_from(jobs).where(jobs.c.status == status, *conditions).scalar_subquery()


_CREATED_SINCE = select(
    *(
        _count_in(status, jobs.c.account_id == bindparam("account_id"), jobs.c.created_at >= bindparam("since")).label(
            status
        )
        for status in EVERY_STATUS
    )
)
_LATEST = (
    select(jobs.c.created_at, jobs.c.started_at)
    .where(jobs.c.account_id == bindparam("account_id"))
    .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
    .limit(bindparam("sample"))
)


def _places(connection: Connection, account_id: str, limit: int, cap: int) -> list[QueuePlace]:
    places = []
    for row in connection.execute(_OLDEST_PENDING, {"account_id": account_id, "limit": limit}):
        parameters = {"type": row.type, "rank": row.priority_rank, "created_at": row.created_at, "job_id": row.id}
        ahead = int(connection.execute(_AHEAD, {**parameters, "cap": cap}).scalar_one())
        places.append(QueuePlace(row.id, row.type, row.priority, row.created_at, min(ahead, cap), ahead >= cap))
    return places


class SqlMonitorStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def job_activity(
        self, account_id: str, since: datetime, queue_limit: int, ahead_cap: int, sample: int
    ) -> JobActivity:
        def work(connection: Connection) -> JobActivity:
            event_seq = connection.execute(_EVENT_SEQ, {"account_id": account_id}).scalar()
            created = connection.execute(_CREATED_SINCE, {"account_id": account_id, "since": since}).one()
            latest = connection.execute(_LATEST, {"account_id": account_id, "sample": sample}).all()
            return JobActivity(
                event_seq=int(event_seq or 0),
                queue=_places(connection, account_id, queue_limit, ahead_cap),
                created_since={status: int(number) for status, number in created._mapping.items() if number},
                waits=[
                    (row.started_at - row.created_at).total_seconds() for row in latest if row.started_at is not None
                ],
            )

        return await self._db.read(work, snapshot=True)

    async def held_by(self, miner_ids: Sequence[str]) -> int:
        if not miner_ids:
            return 0
        miners = jobs.c.miner_id.in_(sorted(set(miner_ids)))
        query = select(sum((_count_in(status, miners) for status in HELD), start=literal(0)))
        return await self._db.read(count(query))
