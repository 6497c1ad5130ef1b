"""A point read on SQLite (`Database.read_row`: a status, a job by id) runs on the event loop's own reader
connection, with no thread hop, and still sees every write committed before it: a client never reads a status
older than one it was told about."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, select, update

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.storage.sql.tables import jobs
from aitbc.wiring import Coordinator, open_coordinator
from tests.helpers import job_request, principal


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

    def progress(connection: Connection) -> int:
        threads.append(threading.get_ident())
        return int(connection.execute(select(jobs.c.progress).where(jobs.c.id == job.id)).scalar_one())

    assert await coordinator.database.read_row(progress) == 0
    for value in (10, 55, 90):
        await coordinator.database.write(
            lambda connection, value=value: connection.execute(
                update(jobs).where(jobs.c.id == job.id).values(progress=value)
            )
        )
        assert await coordinator.database.read_row(progress) == value  # no snapshot held between reads
        found = await coordinator.job_store.get_job(job.id)
        assert found is not None and found.progress == value
    assert set(threads) == {threading.get_ident()}  # the loop's own thread: no hop to a worker


async def test_closing_the_coordinator_closes_the_loops_reader_connection(tmp_path: Path) -> None:
    coordinator = await open_coordinator(Settings(data_dir=tmp_path / "data", run_reaper=False))
    await coordinator.close()
    assert coordinator.database.inline_reader is not None and coordinator.database.inline_reader.closed
