"""SQLite's writer thread commits concurrent writes in groups (one BEGIN IMMEDIATE … COMMIT, one fsync) with a
savepoint per unit of work: a unit that raises loses only its own work. `synchronous` is FULL unless told."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, func, insert, select

from aitbc.domain.clock import ManualClock
from aitbc.domain.errors import Conflict
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.sqlite_writer import DatabaseClosed, SqliteWriter
from aitbc.storage.sql.tables import accounts, jobs, ledger_entries
from aitbc.wiring import Coordinator, open_coordinator
from tests.helpers import job_request, principal

GOOD_SUBMITS = 40  # under the free plan's 50 unfinished jobs


@pytest.fixture
async def sqlite_coordinator(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Coordinator]:
    opened = await open_coordinator(Settings(data_dir=tmp_path / "data", run_reaper=False), clock)
    yield opened
    await opened.close()


def writer_of(database: Database) -> SqliteWriter:
    assert database.sqlite_writer is not None, "SQLite writes go through the writer thread"
    return database.sqlite_writer


class HeldWriter:
    """A unit of work that holds the writer thread until released, so the writes behind it queue up."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, _connection: Connection) -> None:
        self.started.set()
        assert self.release.wait(30), "the test never released the writer"


async def while_held(database: Database, queue: Callable[[], Any], expected: int) -> None:
    """Hold the writer, let `queue()` start `expected` writes, wait until all are queued, then release."""
    writer = writer_of(database)
    held = HeldWriter()
    async with anyio.create_task_group() as group:
        group.start_soon(database.write, held)
        with anyio.fail_after(30):
            while not held.started.is_set():
                await anyio.sleep(0.01)
        queue_started = anyio.Event()

        async def run_queued() -> None:
            queue_started.set()
            await queue()

        group.start_soon(run_queued)
        await queue_started.wait()
        with anyio.fail_after(60):
            while writer.queued < expected:
                await anyio.sleep(0.01)
        held.release.set()


async def count_jobs(database: Database) -> int:
    return await database.read(
        lambda connection: int(connection.execute(select(func.count()).select_from(jobs)).scalar_one())
    )


async def test_concurrent_submits_share_one_commit_and_a_refused_one_fails_alone(
    sqlite_coordinator: Coordinator,
) -> None:
    coordinator = sqlite_coordinator
    database = coordinator.database
    alice = await principal(coordinator, "alice", Role.CLIENT)
    used = await coordinator.jobs.submit(alice, job_request(input="echo first"), idempotency_key="used")
    outcomes: dict[str, Any] = {}

    async def submit(index: int) -> None:
        outcomes[f"good-{index}"] = await coordinator.jobs.submit(alice, job_request(input=f"echo {index}"))

    async def reuse_key() -> None:
        try:
            await coordinator.jobs.submit_many(alice, [(job_request(input="echo other"), "used")])
        except Conflict as error:
            outcomes["reused"] = error

    async def queue() -> None:
        async with anyio.create_task_group() as group:
            for index in range(GOOD_SUBMITS):
                group.start_soon(submit, index)
            group.start_soon(reuse_key)

    writer = writer_of(database)
    groups_before, units_before = writer.groups, writer.units
    await while_held(database, queue, GOOD_SUBMITS + 1)

    assert isinstance(outcomes.pop("reused"), Conflict), "the reused key's unit got its own exception"
    assert len(outcomes) == GOOD_SUBMITS
    assert await count_jobs(database) == GOOD_SUBMITS + 1, "every good submit stored, nothing of the refused one"
    stored = {submitted.job.id for submitted in outcomes.values()} | {used.job.id}
    assert len(stored) == GOOD_SUBMITS + 1
    units = writer.units - units_before
    groups = writer.groups - groups_before
    assert units == GOOD_SUBMITS + 2  # the held unit, the good submits, the refused batch
    assert groups == 2, f"{units} units of work in {groups} transactions: the queued ones shared one commit"


async def test_a_unit_that_raises_after_writing_keeps_nothing_and_undoes_no_other(
    sqlite_coordinator: Coordinator, clock: ManualClock
) -> None:
    database = sqlite_coordinator.database
    results: dict[str, Any] = {}

    def add_account(name: str, then_raise: bool) -> Callable[[Connection], str]:
        def work(connection: Connection) -> str:
            connection.execute(
                insert(accounts).values(id=f"acct_{name}", name=name, plan="free", created_at=clock.now())
            )
            if then_raise:
                raise RuntimeError(f"{name} changed its mind")
            return name

        return work

    async def write(name: str, then_raise: bool) -> None:
        try:
            results[name] = await database.write(add_account(name, then_raise))
        except RuntimeError as error:
            results[name] = error

    async def queue() -> None:
        async with anyio.create_task_group() as group:
            for index in range(10):
                group.start_soon(write, f"writer-{index}", index == 4)

    await while_held(database, queue, 10)
    assert isinstance(results["writer-4"], RuntimeError)
    names = await database.read(lambda connection: connection.execute(select(accounts.c.name)).scalars().all())
    assert sorted(names) == sorted(f"writer-{index}" for index in range(10) if index != 4)


async def test_a_commit_that_fails_fails_every_unit_of_its_group(
    sqlite_coordinator: Coordinator, clock: ManualClock
) -> None:
    """A unit that leaves the transaction unable to commit (a deferred foreign key broken) takes the group
    with it: every caller of that group gets the error, and nothing of the group is stored."""
    database = sqlite_coordinator.database
    now = clock.now()
    results: dict[str, Any] = {}

    def unit(index: int) -> Callable[[Connection], int]:
        def work(connection: Connection) -> int:
            if index == 0:
                connection.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
                connection.execute(
                    insert(ledger_entries).values(account_id="gone", kind="grant", amount_units=1, created_at=now)
                )
            return index

        return work

    async def write(index: int) -> None:
        try:
            results[str(index)] = await database.write(unit(index))
        except Exception as error:
            results[str(index)] = error

    async def queue() -> None:
        async with anyio.create_task_group() as group:
            for index in range(5):
                group.start_soon(write, index)

    await while_held(database, queue, 5)
    assert all(isinstance(outcome, Exception) for outcome in results.values()), results
    kept = select(func.count()).select_from(ledger_entries).where(ledger_entries.c.account_id == "gone")
    assert await database.read(lambda connection: connection.execute(kept).scalar_one()) == 0


@pytest.mark.parametrize(("option", "expected"), [(None, 2), ("full", 2), ("normal", 1)])
async def test_synchronous_is_full_unless_told(tmp_path: Path, option: str | None, expected: int) -> None:
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False)
    if option is not None:
        settings = Settings(data_dir=tmp_path / "data", run_reaper=False, sqlite_synchronous=option)
    coordinator = await open_coordinator(settings)
    try:
        pragma = "PRAGMA synchronous"
        written = await coordinator.database.write(lambda connection: connection.exec_driver_sql(pragma).scalar())
        read = await coordinator.database.read(lambda connection: connection.exec_driver_sql(pragma).scalar())
        assert (written, read) == (expected, expected)  # 2 is FULL, 1 NORMAL
    finally:
        await coordinator.close()


async def test_a_closed_database_refuses_writes_and_leaves_no_thread(tmp_path: Path) -> None:
    coordinator = await open_coordinator(Settings(data_dir=tmp_path / "data", run_reaper=False))
    writer = writer_of(coordinator.database)
    assert writer.running
    await coordinator.close()
    assert not writer.running
    with pytest.raises(DatabaseClosed):
        await coordinator.database.write(lambda connection: connection.exec_driver_sql("SELECT 1").scalar())


async def test_the_writer_goes_on_after_a_failed_commit(sqlite_coordinator: Coordinator, clock: ManualClock) -> None:
    database = sqlite_coordinator.database

    def broken(connection: Connection) -> None:
        connection.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        connection.execute(
            insert(ledger_entries).values(account_id="gone", kind="grant", amount_units=1, created_at=clock.now())
        )

    with pytest.raises(Exception, match="FOREIGN KEY"):
        await database.write(broken)
    alice = await principal(sqlite_coordinator, "alice", Role.CLIENT)
    await sqlite_coordinator.jobs.submit(alice, job_request())
    assert await count_jobs(database) == 1
