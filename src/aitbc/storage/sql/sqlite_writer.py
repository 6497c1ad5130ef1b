"""SQLite's one writer: a dedicated thread that owns the one write connection and commits in groups.

SQLite takes one writer at a time, and with `synchronous=FULL` each COMMIT is an fsync: committing every
request's unit of work on its own would cost each write a disk flush and a thread hop per statement. Instead
callers queue whole units of work (sync functions of a `Connection`); the thread takes every unit queued
since its last commit (up to `MAX_GROUP`, so a group's latency stays bounded), runs them in ONE
`BEGIN IMMEDIATE … COMMIT`, each inside its own SAVEPOINT, and resolves each caller's future only after that
COMMIT returned: a caller learns of its write once it is durable. A unit that raises is rolled back to its
savepoint and gets its exception; the others commit. If the COMMIT itself fails, every unit of the group
gets that error (none of them is stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

T = TypeVar("T")

MAX_GROUP = 64


class DatabaseClosed(RuntimeError):
    """The database was disposed of before (or while) this unit of work waited for the writer."""


@dataclass
class _Unit:
    work: Callable[[Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    outcome: Any = None
    error: BaseException | None = None

    def settle(self) -> None:
        """Hand the outcome to the caller's event loop (its future is not thread-safe)."""
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits for the answer
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if self.future.done():  # the caller was cancelled while it waited
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.outcome)


_STOP = object()


def _end_transaction(connection: Connection) -> None:
    """Roll back what SQLite may still hold open: a COMMIT that fails (a deferred constraint, a full disk)
    leaves SQLite's transaction open although SQLAlchemy's has ended, and the next BEGIN would fail."""
    driver = connection.connection.dbapi_connection
    if driver is not None and driver.in_transaction:
        driver.rollback()


class SqliteWriter:
    """The writer thread over `engine` (a SQLite engine whose BEGIN is `BEGIN IMMEDIATE`)."""

    def __init__(self, engine: Engine, max_group: int = MAX_GROUP) -> None:
        self._engine = engine
        self._max_group = max_group
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self.driver: sqlite3.Connection | None = None  # the write connection, once the thread opened it
        self.groups = 0  # transactions committed (or tried): fewer than units when writes share a commit
        self.units = 0
        self._thread = threading.Thread(target=self._run, name="aitbc-sqlite-writer", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Units waiting for the writer thread (not counting the group it runs)."""
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    async def submit(self, work: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        unit = _Unit(work, loop, loop.create_future())
        with self._lock:
            if self._closed:
                raise DatabaseClosed("the database is closed: this write was not made")
            self._queue.put(unit)
        result: T = await unit.future
        return result

    def close(self) -> None:
        """Stop taking units, let the thread finish the group it runs, fail what is still queued, and wait for
        the thread to end (blocking: call from a worker thread)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join()

    def _take_group(self) -> tuple[list[_Unit], bool]:
        """Wait for one unit, then take every unit already queued behind it (up to the bound)."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        group: list[_Unit] = [first]
        while len(group) < self._max_group:
            try:
                unit = self._queue.get_nowait()
            except queue.Empty:
                break
            if unit is _STOP:
                return group, True
            group.append(unit)
        return group, False

    def _run(self) -> None:
        try:
            with self._engine.connect() as connection:
                driver = connection.connection.driver_connection
                self.driver = driver if isinstance(driver, sqlite3.Connection) else None
                stopping = False
                while not stopping:
                    group, stopping = self._take_group()
                    if group:
                        self._commit_group(connection, group)
        except BaseException as error:  # the connection could not be opened: fail everyone, never hang them
            self._fail_queued(DatabaseClosed(f"the SQLite writer stopped: {error}"))
            raise
        self._fail_queued(DatabaseClosed("the database is closed: this write was not made"))

    def _fail_queued(self, error: DatabaseClosed) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                unit = self._queue.get_nowait()
            except queue.Empty:
                return
            if unit is not _STOP:
                unit.error = error
                unit.settle()

    def _commit_group(self, connection: Connection, group: list[_Unit]) -> None:
        self.groups += 1
        self.units += len(group)
        alone = len(group) == 1  # a unit alone needs no savepoint: the transaction's rollback is its own
        try:
            with connection.begin():
                # The savepoints go straight to the driver: SQLAlchemy's nested transactions cost a unit more
                # than its own statements did, and nothing here needs their bookkeeping.
                driver = connection.connection.driver_connection
                assert driver is not None
                for unit in group:
                    if alone:
                        unit.outcome = unit.work(connection)
                        continue
                    driver.execute("SAVEPOINT unit")
                    try:
                        unit.outcome = unit.work(connection)
                    except Exception as error:
                        driver.execute("ROLLBACK TO unit")
                        unit.error = error
                    driver.execute("RELEASE unit")
        except Exception as error:  # the COMMIT failed, or the unit alone raised: nothing of the group stored
            _end_transaction(connection)
            for unit in group:
                if unit.error is None:
                    unit.error = error
                    unit.outcome = None
        for unit in group:
            unit.settle()
