"""The stats read model: an account's totals from `job_stats_daily` (kept by triggers, migration 0011), so a
stats read costs a few rows per day of history, not one per job."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import BigInteger, Date, Integer, cast, func, select, union_all

from aitbc.domain.job import JobStatus
from aitbc.storage.interfaces import JobStats
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.one_statement import every_row
from aitbc.storage.sql.tables import job_stats_daily, jobs


def run_microseconds(dialect: str) -> Any:
    """How long a job ran, in whole microseconds; NULL unless it both started and completed. The triggers of
    migration 0011 compute the same for the totals (on SQLite, `julianday` knows milliseconds)."""
    if dialect == "postgresql":
        return cast(func.round(func.extract("epoch", jobs.c.completed_at - jobs.c.started_at) * 1000000), BigInteger)
    days = func.julianday(jobs.c.completed_at) - func.julianday(jobs.c.started_at)
    return cast(func.round(days * 86400000.0), Integer) * 1000


def creation_day(dialect: str) -> Any:
    """The UTC day a job was created: its bucket in the kept totals (as the triggers compute it)."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", jobs.c.created_at), Date)
    return func.date(jobs.c.created_at)


def totals_from_jobs(dialect: str) -> Any:
    """The kept totals recounted from the rows, as (account_id, day, status, jobs, runs, run_microseconds,
    cost_units): to fill `job_stats_daily` after a bulk load made with its triggers off (the growth bench)."""
    run = run_microseconds(dialect)
    day = creation_day(dialect)
    return select(
        jobs.c.account_id,
        day,
        jobs.c.status,
        func.count(),
        func.count(run),
        func.coalesce(func.sum(run), 0),
        func.coalesce(func.sum(jobs.c.cost_units), 0),
    ).group_by(jobs.c.account_id, day, jobs.c.status)


def day_edge(since: datetime) -> tuple[datetime, datetime, datetime, int]:
    """How a `since` inside a UTC day is answered: the kept totals from a midnight on (the first
    tuple item), corrected by the jobs created between the next two moments, counted with the sign given:
    +1, the rest of the day after `since`; -1, the part of the day before it (taking the whole day from the
    totals) — whichever is shorter, so the jobs counted one by one are at most half a day's."""
    moment = since.astimezone(UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    if moment - start <= end - moment:
        return start, start, moment, -1
    return end, moment, end, 1


def _merged(rows: Iterable[Any]) -> JobStats:
    """(status, jobs, runs, run microseconds, cost) rows, a status possibly twice, as the stats."""
    by_status: dict[str, int] = {}
    runs = run_microseconds_total = spent = 0
    for status, count, ran, microseconds, cost in rows:
        by_status[status] = by_status.get(status, 0) + int(count)
        spent += int(cost)
        if status == JobStatus.COMPLETED.value:
            runs += int(ran)
            run_microseconds_total += int(microseconds)
    average = round(float(Fraction(run_microseconds_total, runs * 1_000_000)), 3) if runs else None
    return JobStats(
        by_status={status: count for status, count in by_status.items() if count},
        average_run_seconds=average,
        spent_units=spent,
    )


class SqlStatsStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def job_stats(self, account_id: str, since: datetime | None) -> JobStats:
        """Whole days from the kept totals; for a `since` inside a day, the jobs between it and the nearer
        midnight are counted from their rows, through the (account_id, created_at) index (see `day_edge`): exact,
        and at most half a day's jobs, in the same statement (one snapshot) as the totals."""
        kept = job_stats_daily.c
        query: Any = (
            select(
                kept.status,
                func.sum(kept.jobs),
                func.sum(kept.runs),
                func.sum(kept.run_microseconds),
                func.sum(kept.cost_units),
            )
            .where(kept.account_id == account_id)
            .group_by(kept.status)
        )
        if since is not None:
            midnight, edge_from, edge_to, sign = day_edge(since)
            query = query.where(kept.day >= midnight.date())
            if edge_from < edge_to:
                run = run_microseconds(self._db.dialect)
                edge = (
                    select(
                        jobs.c.status,
                        func.count() * sign,
                        func.count(run) * sign,
                        func.coalesce(func.sum(run), 0) * sign,
                        func.coalesce(func.sum(jobs.c.cost_units), 0) * sign,
                    )
                    .where(jobs.c.account_id == account_id, jobs.c.created_at >= edge_from, jobs.c.created_at < edge_to)
                    .group_by(jobs.c.status)
                )
                query = union_all(query, edge)
        return _merged(await self._db.read(every_row(query)))
