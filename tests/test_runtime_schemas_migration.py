"""Migration 0017: miners' `schemas` matches `tables.py`; a miner registered without schemas has NULL there; the
downgrade drops the column and keeps every miner, and a miner from before it (NULL) takes any input."""

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

SCHEMAS: dict[str, Any] = {"command": {"input": {"type": "string"}, "parameters": {"type": "object"}}}


async def _register(settings: Settings, clock: ManualClock, name: str, schemas: dict[str, Any] | None) -> None:
    coordinator = await open_coordinator(settings, clock)
    try:
        farm = await principal(coordinator, "farm", Role.MINER)
        key = public_key_text(Ed25519PrivateKey.generate())
        runtimes = ["command"] if schemas else ["embedding"]
        request = RegisterRequest(name=name, runtimes=runtimes, public_key=key, schemas=schemas)
        await coordinator.miners.register(farm, request)
    finally:
        await coordinator.close()


async def _waiting_for(settings: Settings, clock: ManualClock) -> str | None:
    """What a command job whose input is not a script waits for (a queue timeout: accepted, whoever can run it)."""
    coordinator = await open_coordinator(settings, clock)
    try:
        alice = await principal(coordinator, "alice", Role.CLIENT)
        job = (
            await coordinator.jobs.submit(alice, job_request(input={"not": "a script"}, queue_timeout_seconds=600))
        ).job
        return await coordinator.jobs.waiting_for(job)
    finally:
        await coordinator.close()


def _columns(connection: sa.Connection) -> set[str]:
    return {column["name"] for column in sa.inspect(connection).get_columns("miners")}


async def test_0017_adds_schemas_and_its_downgrade_keeps_the_miners(
    tmp_path: Path, database_url: str, clock: ManualClock
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, run_reaper=False)
    await _register(settings, clock, "declared", SCHEMAS)
    await _register(settings, clock, "plain", None)
    assert "input for 'command': must be a string (got an object)" in str(await _waiting_for(settings, clock))
    engine = sync_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            assert "schemas" in _columns(connection)
            stored = dict(connection.execute(sa.text("SELECT name, schemas IS NULL FROM miners")).all())
            assert stored == {"declared": False, "plain": True}  # SQL NULL, not JSON null
        _migrate_to(engine, "0016", down=True)
        with engine.connect() as connection:
            assert "schemas" not in _columns(connection)
            assert connection.execute(sa.text("SELECT count(*) FROM miners")).scalar() == 2
        _migrate_to(engine, "head")
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(schemas) FROM miners")).scalar() == 0
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = [d for d in compare_metadata(context, metadata) if "schemas" in repr(d)]
        assert differences == []
    finally:
        engine.dispose()
    assert await _waiting_for(settings, clock) == "waiting for a free miner"  # its schemas went with the column
