"""The stats read model: an account's totals from `job_stats_daily` (kept by triggers, migration 0011), so a
stats read costs a few rows per day of history, not one per job."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import BigInteger, Integer, cast, func, select, union_all

from aitbc.domain.job import JobStatus
from aitbc.storage.interfaces import JobStats
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.tables import job_stats_daily, jobs


def run_microseconds(dialect: str) -> Any:
    """How long a job ran, in whole microseconds; NULL unless it both started and completed. The triggers of
    migration 0011 compute the same for the totals (on SQLite, `julianday` knows milliseconds)."""
    if dialect == "postgresql":
        return cast(func.round(func.extract("epoch", jobs.c.completed_at - jobs.c.started_at) * 1000000), BigInteger)
    days = func.julianday(jobs.c.completed_at) - func.julianday(jobs.c.started_at)
    return cast(func.round(days * 86400000.0), Integer) * 1000


def first_whole_day(since: datetime) -> datetime:
    """The first UTC midnight at or after `since`: from it on, the kept totals answer whole days."""
    moment = since.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == moment else midnight + timedelta(days=1)


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
        """Whole days from the kept totals; a `since` inside a day adds the rest of that day counted from the
        jobs themselves, through the (account_id, created_at) index: exact, and at most one day's jobs."""
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
            midnight = first_whole_day(since)
            query = query.where(kept.day >= midnight.date())
            if midnight > since:
                run = run_microseconds(self._db.dialect)
                partial = (
                    select(
                        jobs.c.status,
                        func.count(),
                        func.count(run),
                        func.coalesce(func.sum(run), 0),
                        func.coalesce(func.sum(jobs.c.cost_units), 0),
                    )
                    .where(jobs.c.account_id == account_id, jobs.c.created_at >= since, jobs.c.created_at < midnight)
                    .group_by(jobs.c.status)
                )
                query = union_all(query, partial)
        async with self._db.read_statement() as connection:
            rows = (await connection.execute(query)).all()
        return _merged(rows)
