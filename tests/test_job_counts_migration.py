"""Migration 0010: the `job_counts` table matches `tables.py`, is backfilled from the jobs already stored, and
its triggers keep it exact for writers other than the coordinator (a row inserted or deleted by hand)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.storage.sql.database import sync_engine
from aitbc.storage.sql.tables import job_counts, jobs, metadata
from aitbc.wiring import open_coordinator
from tests.helpers import job_request, principal
from tests.results.test_schema import _migrate_to


def _counts(engine: sa.Engine) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """(maintained, real) per (account, status), zero counts left out."""
    with engine.connect() as connection:
        kept = connection.execute(sa.select(job_counts.c.account_id, job_counts.c.status, job_counts.c.count))
        maintained = {(a, s): int(n) for a, s, n in kept if n}
        grouped = sa.select(jobs.c.account_id, jobs.c.status, sa.func.count()).group_by(
            jobs.c.account_id, jobs.c.status
        )
        real = {(a, s): int(n) for a, s, n in connection.execute(grouped)}
    return maintained, real


async def test_0010_backfills_the_counts_and_its_triggers_keep_them(
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
    finally:
        await coordinator.close()
    engine = sync_engine(settings.resolved_database_url)
    try:
        _migrate_to(engine, "0009", down=True)
        _migrate_to(engine, "head")  # the counts rebuilt from the rows
        maintained, real = _counts(engine)
        assert maintained == real and sum(real.values()) == 5
        with engine.begin() as connection:  # by hand, as a bench seeding rows or an operator would
            some = connection.execute(sa.select(jobs).limit(1)).one()._asdict()
            connection.execute(sa.insert(jobs).values({**some, "id": "job_" + "1" * 32, "idempotency_key": None}))
            connection.execute(sa.update(jobs).where(jobs.c.id == some["id"]).values(status="failed"))
            connection.execute(sa.delete(jobs).where(jobs.c.id == "job_" + "1" * 32))
        maintained, real = _counts(engine)
        assert maintained == real
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = [d for d in compare_metadata(context, metadata) if "job_counts" in repr(d)]
        assert differences == []
    finally:
        engine.dispose()
