"""Growth: the read paths' latency as the history grows (10k, 100k, 1M jobs by default), and the coordinator's
memory after the load at each size.

History is seeded in bulk straight into the `jobs` table (finished jobs of the bench's accounts, spread over
the last 30 days), with the coordinator stopped; SQLAlchemy Core over the store's own table definition
(`aitbc.storage.sql.tables.jobs`) through the coordinator's database (`aitbc.wiring.open_coordinator`).
If the store later keeps aggregates beside the rows, `seed` is the one place to keep them in step: the per-day
stats totals (`job_stats_daily`) have their triggers off while the rows go in and are recounted once after, a
GROUP BY instead of a trigger per row (the per-status counts keep their triggers: they cost less).
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from bench.compare.coordinator import Ours
from bench.compare.wrk import Load, Result, run_wrk
from sqlalchemy import Connection, delete, insert, text

from aitbc.domain.identifiers import new_job_id
from aitbc.domain.job import FailureReason
from aitbc.storage.sql.stats import totals_from_jobs
from aitbc.storage.sql.tables import job_stats_daily, jobs
from aitbc.wiring import open_coordinator

BATCH = 5000
SAMPLE = 5000  # status GETs spread over this many ids, drawn from the whole history
STATUSES = ["completed"] * 8 + ["failed", "canceled"]  # what a history mostly holds
STATS_TRIGGERS = "job_stats_daily_%"


def _stats_triggers_off(connection: Connection) -> list[str]:
    """Turn the stats totals' triggers off; return what turns them back on."""
    if connection.dialect.name == "postgresql":
        named = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'jobs'::regclass AND tgname LIKE :pattern"
        names = [str(name) for (name,) in connection.execute(text(named), {"pattern": STATS_TRIGGERS})]
        for name in names:
            connection.execute(text(f"ALTER TABLE jobs DISABLE TRIGGER {name}"))
        return [f"ALTER TABLE jobs ENABLE TRIGGER {name}" for name in names]
    kept = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE :pattern"
    triggers = [(str(name), str(sql)) for name, sql in connection.execute(text(kept), {"pattern": STATS_TRIGGERS})]
    for name, _ in triggers:
        connection.execute(text(f"DROP TRIGGER {name}"))
    return [sql for _, sql in triggers]


def _recount_stats(restore: list[str], connection: Connection) -> None:
    """The stats totals recounted from every row, and their triggers back, in one transaction."""
    connection.execute(delete(job_stats_daily))
    columns = [c.name for c in job_stats_daily.c]
    connection.execute(insert(job_stats_daily).from_select(columns, totals_from_jobs(connection.dialect.name)))
    for statement in restore:
        connection.exec_driver_sql(statement)


def _insert_jobs(rows: list[dict[str, Any]], connection: Connection) -> None:
    """Seed rows straight into the jobs table (one write unit of work)."""
    connection.execute(insert(jobs), rows)


def _row(index: int, account_id: str, moment: datetime, status: str) -> dict[str, Any]:
    return {
        "id": new_job_id(),
        "account_id": account_id,
        "type": "command",
        "input": f"echo {index}",
        "params": {},
        "gpu_count": 1,
        "priority": "normal",
        "priority_rank": 1,
        "timeout_seconds": 600,
        "status": status,
        "progress": 100 if status == "completed" else 0,
        "attempt": 1,
        "max_attempts": 3,
        "created_at": moment,
        "updated_at": moment,
        "started_at": moment,
        "completed_at": moment,
        "queue_expires_at": moment,
        "results_state": "none",
        "cost_units": 1000,
        "billed_seconds": 1,
        "failure_reason": FailureReason.RUNTIME_ERROR.value if status == "failed" else None,
        "exit_code": 1 if status == "failed" else None,
    }


class History:
    """The seeded history so far, and a uniform sample of its (job id, key) pairs for status GETs."""

    def __init__(self, ours: Ours) -> None:
        self.ours = ours
        self.count = 0
        self.sample: list[tuple[str, str]] = []
        self.random = random.Random(11)

    def seed(self, target: int) -> None:
        """Add finished jobs until the history holds `target`, round-robin over the accounts."""
        asyncio.run(self._seed(target))

    async def _seed(self, target: int) -> None:
        coordinator = await open_coordinator(self.ours.settings())
        accounts = self.ours.clients
        now = datetime.now(UTC)
        restore = await coordinator.database.write(_stats_triggers_off)
        try:
            while self.count < target:
                batch = []
                for _ in range(min(BATCH, target - self.count)):
                    index = self.count
                    account = accounts[index % len(accounts)]
                    moment = now - timedelta(seconds=self.random.uniform(60, 30 * 86400))
                    row = _row(index, account.account_id, moment, self.random.choice(STATUSES))
                    batch.append(row)
                    self._keep(row["id"], account.key)
                    self.count += 1
                await coordinator.database.write(partial(_insert_jobs, batch))
        finally:
            try:
                await coordinator.database.write(partial(_recount_stats, restore))
            finally:
                await coordinator.close()

    def _keep(self, job_id: str, key: str) -> None:
        """Reservoir sampling: every job seeded so far is equally likely to be in the sample."""
        if len(self.sample) < SAMPLE:
            self.sample.append((job_id, key))
            return
        slot = self.random.randrange(self.count + 1)
        if slot < SAMPLE:
            self.sample[slot] = (job_id, key)


def measure(ours: Ours, history: History, load: Load) -> dict[str, Result]:
    """The same wrk load on each read, on a freshly started coordinator over the seeded history."""
    keys = [account.key for account in ours.clients]
    return {
        "status GET": run_wrk(ours.url, [(f"/v1/jobs/{job_id}", key) for job_id, key in history.sample], load),
        "list GET": run_wrk(ours.url, [("/v1/jobs?limit=20", key) for key in keys], load),
        "list GET ?status=failed": run_wrk(ours.url, [("/v1/jobs?status=failed&limit=20", key) for key in keys], load),
        "stats GET": run_wrk(ours.url, [("/v1/stats", key) for key in keys], load),
    }


def size_label(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M jobs"
    if count >= 1000 and count % 1000 == 0:
        return f"{count // 1000}k jobs"
    return f"{count} jobs"
