"""SQLite's page cache is bounded per pooled connection, so a long-running coordinator's memory stays bounded
as its database grows (the 30-minute soak grew by SQLite's default 2000 KiB cache times the pool)."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
from sqlalchemy import Connection, text

from aitbc.storage.sql.database import SQLITE_CACHE_KIB, SQLITE_READERS, migrate, open_database, sqlite_url


def _cache_size(connection: Connection) -> int:
    return int(connection.execute(text("PRAGMA cache_size")).scalar_one())


async def test_every_pooled_sqlite_connection_has_the_bounded_cache(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    migrate(url)
    database = open_database(url)
    try:
        # Every reader at once: each unit waits until all of them hold a connection, so no two share one.
        everyone = threading.Barrier(SQLITE_READERS, timeout=30)

        def held(connection: Connection) -> tuple[int, int]:
            everyone.wait()
            return id(connection.connection.dbapi_connection), _cache_size(connection)

        found: list[tuple[int, int]] = []

        async def read() -> None:
            found.append(await database.read(held))

        async with anyio.create_task_group() as group:
            for _ in range(SQLITE_READERS):
                group.start_soon(read)
        assert len({connection for connection, _ in found}) == SQLITE_READERS
        sizes = [size for _, size in found] + [await database.write(_cache_size)]
        assert sizes == [-SQLITE_CACHE_KIB] * (SQLITE_READERS + 1)
        assert SQLITE_CACHE_KIB < 2000  # smaller than SQLite's default, which is what grew
    finally:
        await database.dispose()
