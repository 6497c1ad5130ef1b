"""The migrations create exactly the results schema that `tables.py` declares, on SQLite and PostgreSQL:
0002 the results tables, 0008 the CRC-32 kept on each result file (moving 0002's CRC-32 cache onto it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from aitbc.storage.sql.database import MIGRATIONS, migrate, sync_engine
from aitbc.storage.sql.tables import metadata

RESULTS_TABLES = {"receipts", "result_shares", "result_purges"}
CRC_CACHE = "result_file_crc32"  # made by 0002, folded into result_files by 0008


def _names(diff: Any) -> set[str]:
    found: set[str] = set()
    items = diff if isinstance(diff, list) else [diff]
    for item in items:
        for part in item if isinstance(item, tuple) else (item,):
            if isinstance(part, str):
                found.add(part)
                continue
            name = getattr(part, "name", None) or getattr(getattr(part, "table", None), "name", None)
            if isinstance(name, str):
                found.add(name)
    return found


def _migrate_to(engine: sa.Engine, revision: str, down: bool = False) -> None:
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def test_the_migrated_schema_matches_the_tables(database_url: str) -> None:
    migrate(database_url)
    engine = sync_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
            tables = set(connection.dialect.get_table_names(connection))
            indexes = {i["name"] for i in connection.dialect.get_indexes(connection, "jobs")}
    finally:
        engine.dispose()
    assert tables >= RESULTS_TABLES and CRC_CACHE not in tables
    assert "ix_jobs_results_state_completed" in indexes
    ours = [
        d for d in differences if _names(d) & (RESULTS_TABLES | {"result_files", "ix_jobs_results_state_completed"})
    ]
    assert ours == []


def test_migration_0002_upgrades_and_downgrades(database_url: str) -> None:
    engine = sync_engine(database_url)

    def to(revision: str, down: bool = False) -> set[str]:
        _migrate_to(engine, revision, down)
        with engine.connect() as connection:
            return set(connection.dialect.get_table_names(connection))

    migrate(database_url)  # from the newest schema down (a PostgreSQL test database starts there anyway)
    try:
        assert not (RESULTS_TABLES | {CRC_CACHE}) & to("0001", down=True)
        assert to("0002") >= RESULTS_TABLES | {CRC_CACHE}
        assert not (RESULTS_TABLES | {CRC_CACHE}) & to("0001", down=True)
        assert to("head") >= RESULTS_TABLES
    finally:
        engine.dispose()


def test_migration_0008_moves_cached_crc32s_onto_the_file_records(database_url: str) -> None:
    """A CRC-32 the cache held lands on its file's record; a file no zip download read yet stays null (the
    first download computes it); going back down puts the known values in the cache again."""
    engine = sync_engine(database_url)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    files = [("job_a", "lease_a", "read.txt", 1234567890), ("job_a", "lease_a", "unread.txt", None)]
    migrate(database_url)
    try:
        _migrate_to(engine, "0007", down=True)
        with engine.begin() as connection:
            for job_id, lease_id, path, crc32 in files:
                connection.execute(
                    sa.text(
                        "INSERT INTO result_files (job_id, lease_id, path, size, sha256, blob_key, created_at) "
                        "VALUES (:job_id, :lease_id, :path, 1, :sha256, :blob_key, :created_at)"
                    ),
                    {
                        "job_id": job_id,
                        "lease_id": lease_id,
                        "path": path,
                        "sha256": "0" * 64,
                        "blob_key": f"results/{job_id}/{path}",
                        "created_at": now,
                    },
                )
                if crc32 is not None:
                    connection.execute(
                        sa.text(
                            f"INSERT INTO {CRC_CACHE} (job_id, lease_id, path, crc32) "
                            "VALUES (:job_id, :lease_id, :path, :crc32)"
                        ),
                        {"job_id": job_id, "lease_id": lease_id, "path": path, "crc32": crc32},
                    )
        _migrate_to(engine, "0008")
        with engine.connect() as connection:
            assert CRC_CACHE not in set(connection.dialect.get_table_names(connection))
            kept = {row.path: row.crc32 for row in connection.execute(sa.text("SELECT path, crc32 FROM result_files"))}
        assert kept == {"read.txt": 1234567890, "unread.txt": None}
        _migrate_to(engine, "0007", down=True)
        with engine.connect() as connection:
            cached = [tuple(row) for row in connection.execute(sa.text(f"SELECT path, crc32 FROM {CRC_CACHE}"))]
        assert cached == [("read.txt", 1234567890)]
        _migrate_to(engine, "head")
    finally:
        engine.dispose()
