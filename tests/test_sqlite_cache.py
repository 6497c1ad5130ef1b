"""SQLite's page cache is bounded per pooled connection, so a long-running coordinator's memory stays bounded
as its database grows (the 30-minute soak grew by SQLite's default 2000 KiB cache times the pool)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from sqlalchemy import text

from aitbc.storage.sql.database import SQLITE_CACHE_KIB, migrate, open_database, sqlite_url

READER_CONNECTIONS = 8  # the reader's pool_size plus max_overflow: every connection it may ever hold at once


async def test_every_pooled_sqlite_connection_has_the_bounded_cache(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    migrate(url)
    database = open_database(url)
    try:
        async with contextlib.AsyncExitStack() as held:
            readers = [await held.enter_async_context(database.read()) for _ in range(READER_CONNECTIONS)]
            sizes = [(await reader.execute(text("PRAGMA cache_size"))).scalar_one() for reader in readers]
            async with database.write() as writer:
                sizes.append((await writer.execute(text("PRAGMA cache_size"))).scalar_one())
        assert sizes == [-SQLITE_CACHE_KIB] * (READER_CONNECTIONS + 1)
        assert SQLITE_CACHE_KIB < 2000  # smaller than SQLite's default, which is what grew
    finally:
        await database.dispose()
