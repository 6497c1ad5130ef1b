"""The database: SQLite (WAL, one writer thread committing in groups) or PostgreSQL, each request's unit of
work run as ONE call on the database side, and the Alembic upgrade run on start.

A store hands `Database.read` / `Database.write` a sync function of a SQLAlchemy `Connection` that does the
whole unit (its statements, events and ledger rows); it runs in one thread hop with the stdlib (pysqlite) or
sync psycopg driver, not one hop per statement as async drivers cost.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.engine import make_url

from aitbc.private_files import PRIVATE_FILE_MODE, make_private_folders, private_file, restrict
from aitbc.storage.sql.point_reader import PostgresPointReader
from aitbc.storage.sql.prepared import run_first, watching
from aitbc.storage.sql.sqlite_writer import SqliteWriter

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# SQLite's page cache per connection, in KiB. Each pooled connection fills its cache as the database grows
# and keeps it: with SQLite's default (2000 KiB) a long-running coordinator's RSS grew by the cache times the
# pool's connections plus the allocator's fragmentation from refilling it. The operating system caches the
# file anyway, so a small per-connection cache costs a read from memory, not from disk.
SQLITE_CACHE_KIB = 512
# SQLite readers: connections in the pool, and the threads that may use them at once (one each).
SQLITE_READERS = 4
# PostgreSQL: the pool, and as many worker threads as it keeps connections, so no thread waits for one and
# none opens a connection of its own: units of work past the pool's size used to open an overflow connection
# and close it again (a new server process each time: most of a submit's cost under load). The overflow is for
# what runs outside the units' limiter (the listener, start-up).
POSTGRES_POOL = 16
POSTGRES_OVERFLOW = 8
# `synchronous=FULL` (the default) fsyncs the WAL at each commit, so a write acknowledged is one a power
# loss keeps; NORMAL fsyncs at checkpoints only (faster, but the last commits can be lost on power loss).
SQLITE_SYNCHRONOUS = ("full", "normal")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'aitbc.db').resolve()}"


def _driver_url(url: str) -> str:
    """The sync SQLAlchemy URL for a user's `sqlite:///…` or `postgresql://…` URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")


def _sqlite_pragmas(synchronous: str) -> Any:
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"unknown SQLite synchronous mode {synchronous!r}: use full or normal")

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")  # negative: a size in KiB, not in pages
        cursor.close()

    return on_connect


SINGLE_STATEMENT = "aitbc_single_statement"


def _sqlite_begin(statement: str) -> Any:
    def on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(SINGLE_STATEMENT):
            return  # a read without a snapshot: each statement is consistent on its own, no BEGIN needed
        connection.exec_driver_sql(statement)

    return on_begin


def _sqlite_engine(url: str, synchronous: str, begin: str, **options: Any) -> Engine:
    engine = create_engine(_driver_url(url), **options)
    event.listen(engine, "connect", _sqlite_pragmas(synchronous))
    event.listen(engine, "begin", _sqlite_begin(begin))
    return engine


def _read_unit(engine: Engine, work: Callable[[Connection], T], snapshot: bool) -> T:
    """One read on a pooled connection: in one transaction when it needs a snapshot across statements."""
    with engine.connect() as connection:
        if snapshot:
            with connection.begin():
                return work(connection)
        connection = connection.execution_options(**{SINGLE_STATEMENT: True})
        return work(connection)


def _write_unit(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.begin() as connection:
        return work(connection)


@dataclass
class Database:
    """Runs units of work: on SQLite, reads on a small pool of reader connections from a bounded set of
    threads and writes on the one writer thread (`SqliteWriter`); on PostgreSQL, each unit in a worker thread
    over one pool (a thread hop per unit of work, the statements in it on one connection)."""

    url: str
    reader: Engine
    writer: Engine
    limiter: anyio.CapacityLimiter
    sqlite_writer: SqliteWriter | None = None
    inline_reader: Connection | None = None  # SQLite: the event loop's own reader connection (`read_first`)
    point_reader: PostgresPointReader | None = None  # PostgreSQL: the loop's own reader (`read_first`)
    _disposed: bool = field(default=False, repr=False)

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine statements run on (to listen to them, e.g. to count statements in tests)."""
        return (self.reader,) if self.reader is self.writer else (self.reader, self.writer)

    @contextlib.contextmanager
    def observed(self) -> Iterator[list[str]]:
        """Every SQL statement run meanwhile, in order, and "COMMIT" for each commit (to count what a request
        costs: tests, the bench): SQLAlchemy's through its events on every engine, the prepared statements run
        on SQLite's driver connections (`prepared.watching`) as they run. Savepoints are not listed."""
        seen: list[str] = []

        def record(_connection: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            seen.append(statement)

        def commit(_connection: Any) -> None:
            seen.append("COMMIT")

        writer = self.sqlite_writer.driver if self.sqlite_writer is not None else None
        drivers = [driver for driver in (self._inline_driver(), writer, self.point_reader) if driver is not None]
        for engine in self.engines:
            event.listen(engine, "before_cursor_execute", record)
            event.listen(engine, "commit", commit)
        try:
            with watching(drivers, seen):
                yield seen
        finally:
            for engine in self.engines:
                event.remove(engine, "before_cursor_execute", record)
                event.remove(engine, "commit", commit)

    async def read(self, work: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """Run `work` on a reader connection. Without `snapshot` no transaction is opened on SQLite (a read of
        one statement is its own snapshot); with it, its statements see one snapshot (one BEGIN…COMMIT)."""
        return await anyio.to_thread.run_sync(partial(_read_unit, self.reader, work, snapshot), limiter=self.limiter)

    async def read_first(self, statement: Select[Any], parameters: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row of a read by primary key (a job's status), as a mapping. On SQLite it runs inline, on
        the event loop's own reader connection, because the statement takes tens of microseconds and handing
        it to a thread and back costs several times that; and on the driver's own connection, `statement`
        compiled once (`PreparedRows`): give it a statement built once, at import. Nothing that scans or
        returns many rows belongs here: it would hold up the loop. On PostgreSQL it is awaited on the loop's
        own asynchronous connection (`PostgresPointReader`), with no thread hop either."""
        if self.point_reader is not None and not self._disposed:
            return await self.point_reader.first(statement, parameters)
        if self.inline_reader is None or self._disposed:
            return await self.read(lambda connection: run_first(connection, statement, parameters))
        return run_first(self.inline_reader, statement, parameters)

    def _inline_driver(self) -> sqlite3.Connection | None:
        driver = self.inline_reader.connection.driver_connection if self.inline_reader is not None else None
        return driver if isinstance(driver, sqlite3.Connection) else None

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a write transaction and answer once that transaction committed (on SQLite, in the
        writer's group commit, under a savepoint of its own). If `work` raises, nothing it did is kept."""
        if self.sqlite_writer is not None:
            return await self.sqlite_writer.submit(work)
        return await anyio.to_thread.run_sync(partial(_write_unit, self.writer, work), limiter=self.limiter)

    async def dispose(self) -> None:
        """Stop the writer (writes queued before this are still made; later ones fail with `DatabaseClosed`,
        none is dropped silently), wait for its thread to end, and close every connection."""
        if self._disposed:
            return
        self._disposed = True
        if self.inline_reader is not None:
            self.inline_reader.close()
        if self.point_reader is not None:
            await self.point_reader.close()
        if self.sqlite_writer is not None:
            await anyio.to_thread.run_sync(self.sqlite_writer.close)
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def open_database(url: str, sqlite_synchronous: str = "full") -> Database:
    if make_url(url).get_backend_name() == "sqlite":
        # A connection is used by one thread at a time (the writer thread; a reader thread under the limiter),
        # though not always the thread that opened it or closes it on dispose.
        shared = {"check_same_thread": False}
        writer = _sqlite_engine(
            url, sqlite_synchronous, "BEGIN IMMEDIATE", pool_size=1, max_overflow=0, connect_args=shared
        )
        reader = _sqlite_engine(
            url, sqlite_synchronous, "BEGIN", pool_size=SQLITE_READERS + 1, max_overflow=0, connect_args=shared
        )
        inline = reader.connect().execution_options(**{SINGLE_STATEMENT: True})
        return Database(
            url=url,
            reader=reader,
            writer=writer,
            limiter=anyio.CapacityLimiter(SQLITE_READERS),
            sqlite_writer=SqliteWriter(writer),
            inline_reader=inline,
        )
    engine = create_engine(
        _driver_url(url), pool_size=POSTGRES_POOL, max_overflow=POSTGRES_OVERFLOW, pool_pre_ping=True
    )
    return Database(
        url=url,
        reader=engine,
        writer=engine,
        limiter=anyio.CapacityLimiter(POSTGRES_POOL),
        point_reader=PostgresPointReader(url, engine.dialect),
    )


def sync_engine(url: str, sqlite_synchronous: str = "full") -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, sqlite_synchronous, "BEGIN IMMEDIATE")
    return create_engine(_driver_url(url))


def private_sqlite_files(database: Path) -> None:
    """The database file owner-only before SQLite first opens it: SQLite gives its -wal and -shm files the
    mode of the database file, so they follow."""
    make_private_folders(database.parent)
    private_file(database)
    for companion in ("-wal", "-shm"):
        restrict(database.with_name(database.name + companion), PRIVATE_FILE_MODE)


def migrate(url: str) -> None:
    """Bring the schema to the newest revision; safe to run from several replicas at once (PostgreSQL
    takes an advisory lock in the migration environment)."""
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            private_sqlite_files(Path(database))
    engine = sync_engine(url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
