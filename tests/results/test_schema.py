"""Migration 0002 creates exactly the results schema that `tables.py` declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from aitbc.storage.sql.database import MIGRATIONS, migrate, sync_engine
from aitbc.storage.sql.tables import metadata

RESULTS_TABLES = {"result_file_crc32", "receipts", "result_shares", "result_purges"}


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


def test_the_migrated_schema_matches_the_tables(database_url: str) -> None:
    migrate(database_url)
    engine = sync_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
            assert set(connection.dialect.get_table_names(connection)) >= RESULTS_TABLES
            indexes = {i["name"] for i in connection.dialect.get_indexes(connection, "jobs")}
    finally:
        engine.dispose()
    assert "ix_jobs_results_state_completed" in indexes
    ours = [d for d in differences if _names(d) & (RESULTS_TABLES | {"ix_jobs_results_state_completed"})]
    assert ours == []


def test_migration_0002_upgrades_and_downgrades(database_url: str) -> None:
    engine = sync_engine(database_url)

    def to(revision: str, down: bool = False) -> set[str]:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)
        with engine.connect() as connection:
            return set(connection.dialect.get_table_names(connection))

    migrate(database_url)  # from the newest schema down (a PostgreSQL test database starts there anyway)
    try:
        assert not RESULTS_TABLES & to("0001", down=True)
        assert to("0002") >= RESULTS_TABLES
        assert not RESULTS_TABLES & to("0001", down=True)
        assert to("head") >= RESULTS_TABLES
    finally:
        engine.dispose()
