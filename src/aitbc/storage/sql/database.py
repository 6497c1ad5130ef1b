"""Engines for SQLite (WAL, one writer) and PostgreSQL, and the Alembic upgrade run on start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from aitbc.private_files import PRIVATE_FILE_MODE, make_private_folders, private_file, restrict

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# SQLite's page cache per connection, in KiB. Each pooled connection fills its cache as the database grows
# and keeps it: with SQLite's default (2000 KiB) a long-running coordinator's RSS grew by the cache times the
# pool's connections (up to 9) plus the allocator's fragmentation from refilling it. The operating system
# caches the file anyway, so a small per-connection cache costs a read from memory, not from disk.
SQLITE_CACHE_KIB = 512


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'aitbc.db').resolve()}"


def _driver_urls(url: str) -> tuple[str, str]:
    """(sync, async) SQLAlchemy URLs for a user's `sqlite:///…` or `postgresql://…` URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return (
            parsed.set(drivername="sqlite").render_as_string(hide_password=False),
            parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False),
        )
    if backend == "postgresql":
        psycopg = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return psycopg, psycopg
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")


def _sqlite_pragmas() -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")  # negative: a size in KiB, not in pages
        cursor.close()

    return on_connect


SINGLE_STATEMENT = "aitbc_single_statement"


def _sqlite_begin(statement: str) -> Any:
    def on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(SINGLE_STATEMENT):
            return  # one read statement is consistent on its own: no BEGIN, one trip to the driver fewer
        connection.exec_driver_sql(statement)

    return on_begin


@dataclass
class Database:
    """A reader and a writer engine. On PostgreSQL they are the same; on SQLite the writer takes the write
    lock at BEGIN (no deadlocking lock upgrades) and is a pool of one, so writes queue in-process."""

    url: str
    reader: AsyncEngine
    writer: AsyncEngine

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def write(self) -> Any:
        """`async with database.write() as connection:` — one transaction that commits on success."""
        return self.writer.begin()

    def read(self) -> Any:
        return self.reader.connect()

    @asynccontextmanager
    async def read_statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a read that is one statement: on SQLite no transaction is opened around it (the
        statement is its own snapshot), so the read costs that one statement and nothing else."""
        async with self.reader.connect() as connection:
            await connection.execution_options(**{SINGLE_STATEMENT: True})
            yield connection

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def open_database(url: str) -> Database:
    _, async_url = _driver_urls(url)
    if make_url(url).get_backend_name() == "sqlite":
        writer = create_async_engine(async_url, pool_size=1, max_overflow=0, pool_timeout=120)
        reader = create_async_engine(async_url, pool_size=4, max_overflow=4)
        for engine, begin in ((writer, "BEGIN IMMEDIATE"), (reader, "BEGIN")):
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas())
            event.listen(engine.sync_engine, "begin", _sqlite_begin(begin))
        return Database(url=url, reader=reader, writer=writer)
    engine = create_async_engine(async_url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    return Database(url=url, reader=engine, writer=engine)


def sync_engine(url: str) -> Engine:
    sync_url, _ = _driver_urls(url)
    engine = create_engine(sync_url)
    if make_url(url).get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas())
        event.listen(engine, "begin", _sqlite_begin("BEGIN IMMEDIATE"))
    return engine


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
