"""Migration 0016: the spending columns and `spending_alerts` match `tables.py`, and the totals are backfilled
from the ledger (the holds no release has ended, the charges of this month's releases), on SQLite and
PostgreSQL; downgrading removes them and narrows `job_events.kind` again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aitbc.domain.clock import ManualClock
from aitbc.domain.money import to_units
from aitbc.domain.plans import Role
from aitbc.domain.spending import month_of
from aitbc.protocol.miners import FinishRequest
from aitbc.settings import Settings
from aitbc.storage.sql.database import sync_engine
from aitbc.storage.sql.tables import accounts, metadata
from aitbc.wiring import open_coordinator
from tests.helpers import job_request, principal, register_miner
from tests.results.test_schema import _migrate_to


async def test_0016_backfills_the_totals_from_the_ledger(tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, run_reaper=False)
    clock = ManualClock(datetime.now(UTC) - timedelta(hours=2))
    coordinator = await open_coordinator(settings, clock)
    try:
        client = await principal(coordinator, "alice", Role.CLIENT)
        owner = await principal(coordinator, "farm", Role.MINER)
        miner = await register_miner(coordinator, owner, gpus=[{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}])
        spec = {"type": "command", "requirements": {"gpu_type": "a100"}, "timeout_seconds": 3600}
        ran = (await coordinator.jobs.submit(client, job_request(**spec))).job
        clock.advance(1)  # the queue's order: `ran` first
        waiting = [(await coordinator.jobs.submit(client, job_request(**spec))).job for _ in range(2)]
        claimed = await coordinator.claiming.claim(owner, miner, 1, 0)
        assert claimed[0].job_id == ran.id
        await coordinator.running.start(owner, miner, ran.id, claimed[0].lease_id)
        clock.advance(600)
        await coordinator.finishing.complete(owner, miner, ran.id, FinishRequest(lease_id=claimed[0].lease_id))
        charge = (await coordinator.jobs.get(client, ran.id)).cost
        settled_in = month_of(clock.now())
        account_id = client.account.id
    finally:
        await coordinator.close()
    engine = sync_engine(settings.resolved_database_url)
    try:
        _migrate_to(engine, "0014", down=True)
        with engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("accounts")}
            assert "held_units" not in columns and "spending_alerts" not in sa.inspect(connection).get_table_names()
        _migrate_to(engine, "head")
        this_month = month_of(datetime.now(UTC))
        with engine.connect() as connection:
            row = connection.execute(sa.select(accounts).where(accounts.c.id == account_id)).one()
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)  # the whole schema: 0016's columns and tables too
        assert row.held_units == sum(to_units(job.max_cost) for job in waiting) == to_units(2 * ran.max_cost)
        assert row.charged_month == this_month
        assert row.month_charged_units == (to_units(charge) if settled_in == this_month else 0)
        assert charge is not None and charge > 0
        assert differences == []
    finally:
        engine.dispose()
