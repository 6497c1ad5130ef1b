"""The stats read model (`StatsStore`): what it answers equals the scan over `jobs` it replaced (kept below as
the reference) for any history and any `since`, and the per-day totals its triggers keep equal a recount of
the rows after every kind of write a job gets (submit, claim, start, complete, fail, cancel, requeue and
re-run, a retry, result deletion, a row deleted by hand)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitbc.domain.accounts import Account
from aitbc.domain.job import FailureReason, Job, JobStatus
from aitbc.domain.moves import Billed, Complete, ConfirmCancel, Fail, MinerReport, Requeue, Start, WriteSet
from aitbc.domain.package import ResultsState
from aitbc.domain.plans import Plan
from aitbc.domain.transitions import Move
from aitbc.storage.interfaces import JobStats
from aitbc.storage.sql.database import open_database
from aitbc.storage.sql.jobs import new_job_values
from aitbc.storage.sql.stats import SqlStatsStore, totals_from_jobs
from aitbc.storage.sql.tables import accounts, job_stats_daily, jobs
from tests.store_contract.conftest import T0, Backend, Stores, at, job_row

Totals = dict[tuple[str, date, str], tuple[int, int, int, int]]


@dataclass(frozen=True)
class Reference:
    """What the scan over `jobs` answered: the stats with the average not yet rounded."""

    by_status: dict[str, int]
    average: float | None
    spent_units: int


def reference(connection: sa.Connection, account_id: str, since: datetime | None) -> Reference:
    """The query `/v1/stats` ran before the kept totals (SqlJobStore.job_stats), as it was."""
    conditions: list[Any] = [jobs.c.account_id == account_id]
    if since is not None:
        conditions.append(jobs.c.created_at >= since)
    if connection.dialect.name == "postgresql":
        run_seconds: Any = sa.func.extract("epoch", jobs.c.completed_at - jobs.c.started_at)
    else:
        run_seconds = (sa.func.julianday(jobs.c.completed_at) - sa.func.julianday(jobs.c.started_at)) * 86400.0
    by_status = sa.select(jobs.c.status, sa.func.count()).where(*conditions).group_by(jobs.c.status)
    averages = sa.select(sa.func.avg(run_seconds)).where(
        *conditions, jobs.c.status == JobStatus.COMPLETED.value, jobs.c.started_at.is_not(None)
    )
    spent = sa.select(sa.func.coalesce(sa.func.sum(jobs.c.cost_units), 0)).where(*conditions)
    counts = {status: int(n) for status, n in connection.execute(by_status).all()}
    average = connection.execute(averages).scalar()
    return Reference(
        counts, float(average) if average is not None else None, int(connection.execute(spent).scalar_one())
    )


def assert_same(stats: JobStats, expected: Reference, dialect: str) -> None:
    """Equal to the reference, the average to the millisecond it is rounded to. Ours is rounded from whole
    microseconds (milliseconds on SQLite); the reference's from SQLite's float days, where a run is off by up to
    ~4e-5 s (PostgreSQL's numeric is exact): only where the true average lies that close to a rounding tie may
    the two round to neighbouring milliseconds."""
    assert stats.by_status == expected.by_status
    assert stats.spent_units == expected.spent_units
    if expected.average is None:
        assert stats.average_run_seconds is None
        return
    assert stats.average_run_seconds is not None
    assert stats.average_run_seconds == round(stats.average_run_seconds, 3)
    noise = 1e-4 if dialect == "sqlite" else 1e-9
    assert abs(stats.average_run_seconds - expected.average) <= 0.0005 + noise


def kept_totals(connection: sa.Connection) -> Totals:
    """The maintained totals, rows that went back to nothing left out."""
    kept = job_stats_daily.c
    rows = connection.execute(
        sa.select(kept.account_id, kept.day, kept.status, kept.jobs, kept.runs, kept.run_microseconds, kept.cost_units)
    )
    return {(a, d, s): (int(n), int(r), int(m), int(c)) for a, d, s, n, r, m, c in rows if (n, r, m, c) != (0, 0, 0, 0)}


def recounted(connection: sa.Connection) -> Totals:
    """The same totals recounted in Python from the rows (whole-millisecond times, so SQLite's are exact)."""
    totals: dict[tuple[str, date, str], list[int]] = {}
    columns = (jobs.c.account_id, jobs.c.created_at, jobs.c.status, jobs.c.started_at, jobs.c.completed_at)
    for account_id, created, status, started, completed, cost in connection.execute(
        sa.select(*columns, jobs.c.cost_units)
    ):
        bucket = totals.setdefault((account_id, created.astimezone(UTC).date(), status), [0, 0, 0, 0])
        bucket[0] += 1
        if started is not None and completed is not None:
            bucket[1] += 1
            bucket[2] += (completed - started) // timedelta(microseconds=1)
        bucket[3] += cost or 0
    return {key: (n, r, m, c) for key, (n, r, m, c) in totals.items()}


def assert_kept(backend: Backend) -> None:
    """The kept totals equal a recount, and the recount the bench rebuilds them with (`totals_from_jobs`)."""
    with backend.engine.connect() as connection:
        real = recounted(connection)
        assert kept_totals(connection) == real
        rebuilt = connection.execute(totals_from_jobs(connection.dialect.name)).all()
    assert {(a, _as_date(d), s): (int(n), int(r), int(m), int(c)) for a, d, s, n, r, m, c in rebuilt} == real


def _as_date(day: date | str) -> date:
    return day if isinstance(day, date) else date.fromisoformat(day)  # SQLite's date() is text


async def assert_stats(stores: Stores, backend: Backend, account: Account, since: datetime | None) -> JobStats:
    stats = await stores.stats.job_stats(account.id, since)
    with backend.engine.connect() as connection:
        assert_same(stats, reference(connection, account.id, since), connection.dialect.name)
    return stats


def cost(units: int, seconds: int = 1) -> Billed:
    return Billed(units, seconds, None, None)


async def moved(stores: Stores, job: Job, write: WriteSet, lease_id: str, billed: Billed | None = None) -> Job:
    """A move that must succeed, with what settling it charged (`Stores.move` settles nothing)."""
    changed = await stores.jobs.transition(job.id, write, at(1), lease_id=lease_id, billed=billed)
    assert changed is not None, (job.status, write)
    return changed.job


async def test_the_totals_follow_a_job_through_every_write(stores: Stores, backend: Backend, alice: Account) -> None:
    later = T0 + timedelta(days=1, hours=5)  # a second day of history
    assert (await stores.stats.job_stats(alice.id, None)) == JobStats({}, None, 0)

    done = await stores.claim(await stores.submit(alice))
    assert_kept(backend)
    done = await moved(stores, done, Start(at(2), at(60)), "lease_1")
    assert_kept(backend)
    report = MinerReport("lease_1", ResultsState.AVAILABLE)
    done = await moved(stores, done, Complete(at(32), report), "lease_1", cost(700, 30))
    assert_kept(backend)

    failed = await stores.in_status(alice, JobStatus.RUNNING, lease_id="lease_2")
    await moved(stores, failed, Fail(at(5), FailureReason.RUNTIME_ERROR, "exit 1"), "lease_2", cost(50))
    await stores.move(await stores.submit(alice, created_at=later), Move.CANCEL_PENDING)
    canceling = await stores.in_status(alice, JobStatus.CANCELING, lease_id="lease_3")
    confirm = ConfirmCancel(at(7), MinerReport("lease_3", ResultsState.NONE))
    await moved(stores, canceling, confirm, "lease_3", cost(3))
    assert_kept(backend)

    # A lost miner: the job goes back to pending (its run forgotten), runs again and completes.
    rerun = await stores.in_status(alice, JobStatus.ASSIGNED, "lease_4")
    rerun = await moved(stores, rerun, Start(at(20), at(60)), "lease_4")
    rerun = await moved(stores, rerun, Requeue("lost"), "lease_4")
    assert rerun.started_at is None
    assert_kept(backend)
    rerun = await stores.claim(rerun, lease_id="lease_5")
    rerun = await moved(stores, rerun, Start(at(40), at(60)), "lease_5")
    await moved(stores, rerun, Complete(at(50), MinerReport("lease_5", ResultsState.NONE)), "lease_5", cost(200))
    # A retry: a new job pointing back at the failed one.
    await stores.submit(alice, retry_of=failed.id, created_at=later)
    assert_kept(backend)

    stats = await assert_stats(stores, backend, alice, None)
    assert stats.by_status == {"completed": 2, "failed": 1, "canceled": 2, "pending": 1}
    assert stats.average_run_seconds == 20.0 and stats.spent_units == 953
    assert (await assert_stats(stores, backend, alice, T0 + timedelta(days=1))).by_status == {
        "canceled": 1,
        "pending": 1,
    }
    assert (await assert_stats(stores, backend, alice, later + timedelta(microseconds=1))).by_status == {}
    await assert_stats(stores, backend, alice, T0 - timedelta(hours=3))

    # Deleting results leaves the stats; deleting a job's row (by hand: nothing in the coordinator does) does not.
    assert await stores.results.retire_results(done.id, ResultsState.DELETED, at(60)) is not None
    assert_kept(backend)
    with backend.engine.begin() as connection:
        connection.execute(sa.delete(jobs).where(jobs.c.id == done.id))
    assert_kept(backend)
    stats = await assert_stats(stores, backend, alice, None)
    assert stats.by_status["completed"] == 1 and stats.average_run_seconds == 10.0 and stats.spent_units == 253


# A history for the property below: jobs of two accounts over three days, times to the microsecond.
START = datetime(2026, 3, 1, tzinfo=UTC)
MICROSECONDS = st.integers(0, 3 * 86_400 * 10**6)
DURATION = st.one_of(st.none(), st.integers(-2 * 10**6, 3 * 3600 * 10**6))
STATUSES = st.sampled_from(list(JobStatus))
COST = st.one_of(st.none(), st.integers(0, 10**12))


@dataclass(frozen=True)
class Version:
    status: JobStatus
    waited: int | None  # from creation to start, in microseconds; None: not started
    ran: int | None  # from start to completion; None: not completed
    cost_units: int | None

    def columns(self, created: datetime) -> dict[str, Any]:
        started = created + timedelta(microseconds=self.waited) if self.waited is not None else None
        completed = started + timedelta(microseconds=self.ran) if started is not None and self.ran is not None else None
        return {
            "status": self.status.value,
            "started_at": started,
            "completed_at": completed,
            "cost_units": self.cost_units,
        }


VERSIONS = st.builds(Version, STATUSES, st.one_of(st.none(), st.integers(0, 3600 * 10**6)), DURATION, COST)


@dataclass(frozen=True)
class Seeded:
    account: int
    created: int
    first: Version
    then: Version | None  # an update after every insert
    deleted: bool


HISTORY = st.lists(
    st.builds(Seeded, st.integers(0, 1), MICROSECONDS, VERSIONS, st.one_of(st.none(), VERSIONS), st.booleans()),
    max_size=25,
)
NEAR = st.integers(-3 * 3600 * 10**6, 3 * 3600 * 10**6)  # around a job's creation: `since` inside its day


def moments(history: list[Seeded]) -> st.SearchStrategy[list[datetime | None]]:
    """Where `since` falls: nowhere, anywhere, on a midnight exactly, or near a job of the history."""
    anywhere = MICROSECONDS.map(lambda offset: START + timedelta(microseconds=offset - 86_400 * 10**6))
    midnight = st.integers(-1, 4).map(lambda days: START + timedelta(days=days))
    kinds = [st.none(), anywhere, midnight]
    if history:
        near = st.tuples(st.sampled_from(history), NEAR)
        kinds.append(near.map(lambda pair: START + timedelta(microseconds=pair[0].created + pair[1])))
    return st.lists(st.one_of(*kinds), min_size=1, max_size=4)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=HISTORY, data=st.data())
def test_stats_equal_the_scan_they_replaced(
    backend: Backend, loop: asyncio.AbstractEventLoop, history: list[Seeded], data: st.DataObject
) -> None:
    since = data.draw(moments(history))
    backend.clear()
    names = ("alice", "bob")
    with backend.engine.begin() as connection:
        connection.execute(
            sa.insert(accounts),
            [{"id": f"acct_{n}", "name": n, "plan": Plan.FREE.value, "created_at": T0, "event_seq": 0} for n in names],
        )
        rows: list[dict[str, Any]] = []
        for item in history:
            created = START + timedelta(microseconds=item.created)
            account = Account(f"acct_{names[item.account]}", names[item.account], Plan.FREE, T0)
            rows.append(new_job_values(job_row(account, created_at=created)) | item.first.columns(created))
        for row in rows:
            connection.execute(sa.insert(jobs).values(row))
        for item, row in zip(history, rows, strict=True):
            if item.then is not None:
                changed = sa.update(jobs).where(jobs.c.id == row["id"])
                connection.execute(changed.values(item.then.columns(row["created_at"])))
        gone = [row["id"] for item, row in zip(history, rows, strict=True) if item.deleted]
        connection.execute(sa.delete(jobs).where(jobs.c.id.in_(gone)))

    async def answers() -> list[list[JobStats]]:
        database = open_database(backend.url)
        try:
            store = SqlStatsStore(database)
            return [[await store.job_stats(f"acct_{n}", moment) for moment in since] for n in names]
        finally:
            await database.dispose()

    found = loop.run_until_complete(answers())
    with backend.engine.connect() as connection:
        for name, stats in zip(names, found, strict=True):
            for moment, answer in zip(since, stats, strict=True):
                assert_same(answer, reference(connection, f"acct_{name}", moment), connection.dialect.name)
