"""The growth bench's bulk seed turns the stats totals' triggers off and recounts the totals after: they come
out exact, and the triggers keep them again afterwards."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import sqlalchemy as sa
from bench.compare.growth import _recount_stats, _row, _stats_triggers_off

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.storage.sql.database import sync_engine
from aitbc.storage.sql.one_statement import scalar
from aitbc.storage.sql.tables import job_stats_daily, jobs
from aitbc.wiring import Coordinator
from tests.helpers import principal
from tests.store_contract.test_stats_store import Totals, kept_totals, recounted


def _kept_and_real(settings: Settings) -> tuple[Totals, Totals]:
    engine = sync_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            return kept_totals(connection), recounted(connection)
    finally:
        engine.dispose()


async def test_the_bulk_seed_recounts_the_stats_totals_and_restores_their_triggers(
    coordinator: Coordinator, settings: Settings, clock: ManualClock
) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    database = coordinator.database
    rows = [
        _row(index, client.account.id, clock.now() - timedelta(hours=7 * index), status)
        for index, status in enumerate(["completed", "failed", "canceled", "completed"] * 5)
    ]
    restore = await database.write(_stats_triggers_off)
    assert len(restore) >= 2
    await database.write(lambda connection: connection.execute(sa.insert(jobs), rows[:-1]))
    assert await database.read(scalar(sa.select(sa.func.count()).select_from(job_stats_daily))) == 0
    await database.write(partial(_recount_stats, restore))
    kept, real = _kept_and_real(settings)
    assert kept == real and len(real) > 3

    await database.write(lambda connection: connection.execute(sa.insert(jobs), rows[-1:]))  # the triggers are back
    kept, real = _kept_and_real(settings)
    assert kept == real and sum(n for n, *_ in real.values()) == len(rows)
