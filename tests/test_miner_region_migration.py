"""Migration 0013: miners' `region`, jobs' `pinned_miner_id` and their indexes match `tables.py`; its downgrade
drops them and keeps every row, and neither way rebuilds `jobs` (whose triggers keep the job counts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.clock import ManualClock
from aitbc.domain.manifest import public_key_text
from aitbc.domain.plans import Role
from aitbc.protocol.miners import RegisterRequest
from aitbc.settings import Settings
from aitbc.storage.sql.database import sync_engine
from aitbc.storage.sql.tables import metadata
from aitbc.wiring import open_coordinator
from tests.helpers import job_request, principal
from tests.results.test_schema import _migrate_to

OURS = ("pinned_miner_id", "region", "ix_jobs_pinned", "ix_miners_name")
MINER_KEY = public_key_text(Ed25519PrivateKey.generate())  # one miner, registered again after the migrations


def _schema(connection: sa.Connection) -> dict[str, Any]:
    inspector = sa.inspect(connection)
    if connection.dialect.name == "sqlite":
        triggers = connection.execute(sa.text("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'")).scalar()
    else:
        triggers = connection.execute(
            sa.text("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'jobs'::regclass AND NOT tgisinternal")
        ).scalar()
    return {
        "jobs": {column["name"] for column in inspector.get_columns("jobs")},
        "miners": {column["name"] for column in inspector.get_columns("miners")},
        "indexes": {i["name"] for table in ("jobs", "miners") for i in inspector.get_indexes(table)},
        "triggers": triggers,
        "rows": connection.execute(sa.text("SELECT count(*) FROM jobs")).scalar(),
        "counted": connection.execute(sa.text("SELECT coalesce(sum(count), 0) FROM job_counts")).scalar(),
    }


async def _submit_pinned(settings: Settings, clock: ManualClock) -> None:
    coordinator = await open_coordinator(settings, clock)
    try:
        farm = await principal(coordinator, "farm", Role.MINER)
        request = RegisterRequest(name="rig", runtimes=["command"], public_key=MINER_KEY, region="us-west")
        await coordinator.miners.register(farm, request)
        client = await principal(coordinator, "alice", Role.CLIENT)
        await coordinator.jobs.submit(client, job_request(requirements={"miner_id": "rig"}))
        await coordinator.jobs.submit(client, job_request())
    finally:
        await coordinator.close()


async def test_0013_adds_region_and_pins_and_its_downgrade_keeps_the_rows(
    tmp_path: Path, database_url: str, clock: ManualClock
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, run_reaper=False)
    await _submit_pinned(settings, clock)
    engine = sync_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            head = _schema(connection)
            assert connection.execute(sa.text("SELECT region FROM miners")).scalar() == "us-west"
            assert connection.execute(sa.text("SELECT count(pinned_miner_id) FROM jobs")).scalar() == 1
        assert {"pinned_miner_id"} <= head["jobs"] and {"region"} <= head["miners"]
        assert {"ix_jobs_pinned", "ix_miners_name"} <= head["indexes"]
        _migrate_to(engine, "0011", down=True)
        with engine.connect() as connection:
            down = _schema(connection)
        assert "pinned_miner_id" not in down["jobs"] and "region" not in down["miners"]
        assert not {"ix_jobs_pinned", "ix_miners_name"} & down["indexes"]
        assert (down["triggers"], down["rows"], down["counted"]) == (head["triggers"], 2, 2)
        _migrate_to(engine, "head")
        with engine.connect() as connection:
            again = _schema(connection)
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = [d for d in compare_metadata(context, metadata) if any(name in repr(d) for name in OURS)]
        assert differences == []
        assert (again["jobs"], again["miners"], again["indexes"]) == (head["jobs"], head["miners"], head["indexes"])
        assert again["triggers"] == head["triggers"]
    finally:
        engine.dispose()
    await _submit_pinned(settings, clock)  # the counts' triggers still fire after both ways
    engine = sync_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            assert (_schema(connection)["rows"], _schema(connection)["counted"]) == (4, 4)
    finally:
        engine.dispose()
