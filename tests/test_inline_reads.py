"""A point read on SQLite (`Database.read_first`: a status, a job by id) runs on the event loop's own reader
connection, with no thread hop, and still sees every write committed before it: a client never reads a status
older than one it was told about. It runs on the driver's connection with a statement compiled once, and
gives back what SQLAlchemy's own execution of the statement gives."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, func, select, update

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.storage.sql.tables import jobs
from aitbc.wiring import Coordinator, open_coordinator
from tests.helpers import job_request, principal

PROGRESS = select(jobs.c.progress).where(jobs.c.id == bindparam("job_id"))
BACKEND_PID = select(func.pg_backend_pid().label("pid"))


@pytest.fixture
async def sqlite_coordinator(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Coordinator]:
    opened = await open_coordinator(Settings(data_dir=tmp_path / "data", run_reaper=False), clock)
    yield opened
    await opened.close()


async def test_a_point_read_runs_on_the_loop_and_sees_each_committed_write(sqlite_coordinator: Coordinator) -> None:
    coordinator = sqlite_coordinator
    client = await principal(coordinator, "alice", Role.CLIENT)
    job = (await coordinator.jobs.submit(client, job_request())).job
    threads: list[int] = []
    inline = coordinator.database.inline_reader
    assert inline is not None
    driver = inline.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    driver.set_trace_callback(lambda _statement: threads.append(threading.get_ident()))

    async def progress() -> int:
        row = await coordinator.database.read_first(PROGRESS, {"job_id": job.id})
        assert row is not None
        return int(row["progress"])

    assert await progress() == 0
    for value in (10, 55, 90):
        await coordinator.database.write(
            lambda connection, value=value: connection.execute(
                update(jobs).where(jobs.c.id == job.id).values(progress=value)
            )
        )
        assert await progress() == value  # no snapshot held between reads
        found = await coordinator.job_store.get_job(job.id)
        assert found is not None and found.progress == value
    assert threads and set(threads) == {threading.get_ident()}  # the loop's own thread: no hop to a worker


async def test_a_prepared_read_gives_what_sqlalchemy_gives(coordinator: Coordinator, clock: ManualClock) -> None:
    """Every column type of a job row (timestamps, JSON, numbers, NULLs) comes back as SQLAlchemy reads it, on
    SQLite's inline reader and on PostgreSQL's point reader."""
    client = await principal(coordinator, "alice", Role.CLIENT)
    job = (await coordinator.jobs.submit(client, job_request(params={"steps": 3, "nested": {"a": [1, 2.5]}}))).job
    await coordinator.database.write(
        lambda connection: connection.execute(
            update(jobs).where(jobs.c.id == job.id).values(started_at=clock.now(), error="é\n", exit_code=0)
        )
    )
    statement = select(jobs).where(jobs.c.id == bindparam("job_id"))
    prepared = await coordinator.database.read_first(statement, {"job_id": job.id})

    def by_sqlalchemy(connection: Connection) -> dict[str, Any]:
        return dict(connection.execute(statement, {"job_id": job.id}).one()._mapping)

    expected = await coordinator.database.read(by_sqlalchemy)
    assert prepared == expected
    assert prepared["started_at"] == clock.now() and prepared["params"]["nested"] == {"a": [1, 2.5]}
    assert await coordinator.database.read_first(statement, {"job_id": "job_missing"}) is None


async def test_closing_the_coordinator_closes_the_loops_reader_connection(tmp_path: Path) -> None:
    coordinator = await open_coordinator(Settings(data_dir=tmp_path / "data", run_reaper=False))
    await coordinator.close()
    assert coordinator.database.inline_reader is not None and coordinator.database.inline_reader.closed


@pytest.fixture
async def postgres_coordinator(tmp_path: Path, postgres_url: str, clock: ManualClock) -> AsyncIterator[Coordinator]:
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url, run_reaper=False)
    opened = await open_coordinator(settings, clock)
    yield opened
    await opened.close()


@pytest.mark.postgres
async def test_the_postgresql_point_reader_reconnects_after_its_connection_is_cut(
    postgres_coordinator: Coordinator,
) -> None:
    coordinator = postgres_coordinator
    reader = coordinator.database.point_reader
    assert reader is not None
    client = await principal(coordinator, "alice", Role.CLIENT)
    job = (await coordinator.jobs.submit(client, job_request())).job
    assert await coordinator.database.read_first(PROGRESS, {"job_id": job.id}) == {"progress": 0}
    first = await reader.first(BACKEND_PID, {})
    assert first is not None
    pid = first["pid"]
    await coordinator.database.read(
        lambda connection: connection.execute(select(func.pg_terminate_backend(pid))).scalar_one()
    )
    assert await coordinator.database.read_first(PROGRESS, {"job_id": job.id}) == {"progress": 0}
    again = await reader.first(BACKEND_PID, {})
    assert again is not None and again["pid"] != pid  # a new connection, not the cut one
