"""Migration 0011: the `job_stats_daily` table matches `tables.py`, is summed from the jobs already stored (the
totals of a history written before it equal a recount), and goes away again on downgrade."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.storage.sql.database import sync_engine
from aitbc.storage.sql.tables import jobs, metadata
from aitbc.wiring import open_coordinator
from tests.helpers import job_request, principal
from tests.results.test_schema import _migrate_to
from tests.store_contract.test_stats_store import kept_totals, recounted


async def test_0011_sums_the_history_and_its_downgrade_drops_the_totals(
    tmp_path: Path, database_url: str, clock: ManualClock
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, run_reaper=False)
    coordinator = await open_coordinator(settings, clock)
    try:
        for account in ("alice", "bob"):
            client = await principal(coordinator, account, Role.CLIENT)
            for number in range(3 if account == "alice" else 2):
                job = (await coordinator.jobs.submit(client, job_request())).job
                if number == 0:
                    await coordinator.jobs.cancel(client, job.id)
                clock.advance(86_400 / 2)  # the history spans days
    finally:
        await coordinator.close()
    engine = sync_engine(settings.resolved_database_url)
    try:
        _migrate_to(engine, "0010", down=True)
        with engine.connect() as connection:
            assert "job_stats_daily" not in connection.dialect.get_table_names(connection)
        with engine.begin() as connection:  # written while no trigger kept the totals
            some = connection.execute(sa.select(jobs.c.id).limit(1)).one()._asdict()
            connection.execute(sa.update(jobs).where(jobs.c.id == some["id"]).values(cost_units=12))
        _migrate_to(engine, "head")
        with engine.connect() as connection:
            kept, real = kept_totals(connection), recounted(connection)
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = [d for d in compare_metadata(context, metadata) if "job_stats_daily" in repr(d)]
        assert kept == real and sum(n for n, *_ in real.values()) == 5 and len({day for _, day, _ in real}) > 1
        assert differences == []
    finally:
        engine.dispose()
