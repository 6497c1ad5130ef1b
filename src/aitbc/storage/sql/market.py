"""The SQL market store: what the marketplace counts — pending jobs grouped by what they ask for, and the jobs
each miner holds. Counts only: no job's input, owner or id leaves here."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select

from aitbc.domain.job import JobSpec, JobStatus, Requirements
from aitbc.storage.interfaces import Demand, Load
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.one_statement import every_row
from aitbc.storage.sql.tables import jobs

_ASKED = (jobs.c.type, jobs.c.model, jobs.c.gpu_type, jobs.c.gpu_count, jobs.c.min_vram_gb, jobs.c.pinned_miner_id)
# The first pending jobs (any order: a count, not a queue), on the indexes that lead with the status.
_PENDING = select(*_ASKED).where(jobs.c.status == JobStatus.PENDING.value).limit(bindparam("scan")).subquery()
_DEMAND = select(*_PENDING.c, func.count().label("jobs")).group_by(*_PENDING.c)
# Every held lease, by miner (on `ix_jobs_status_lease`): a canceling job still holds its GPUs until it stops.
_HELD = (JobStatus.ASSIGNED.value, JobStatus.RUNNING.value, JobStatus.CANCELING.value)
_LOADS = (
    select(jobs.c.miner_id, func.count().label("jobs"), func.coalesce(func.sum(jobs.c.gpu_count), 0).label("gpus"))
    .where(jobs.c.status.in_(_HELD), jobs.c.miner_id.is_not(None))
    .group_by(jobs.c.miner_id)
)


class SqlMarketStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def pending_demand(self, limit: int) -> tuple[list[Demand], bool]:
        rows = await self._db.read(every_row(_DEMAND, {"scan": limit + 1}))
        demand = [
            Demand(
                spec=JobSpec(
                    type=row.type,
                    model=row.model,
                    input=None,
                    requirements=Requirements(
                        gpu_type=row.gpu_type,
                        gpu_count=row.gpu_count,
                        min_vram_gb=row.min_vram_gb,
                        miner_id=row.pinned_miner_id,
                    ),
                ),
                count=int(row.jobs),
            )
            for row in rows
        ]
        return demand, sum(item.count for item in demand) <= limit

    async def miner_loads(self) -> dict[str, Load]:
        rows = await self._db.read(every_row(_LOADS))
        return {row.miner_id: Load(jobs=int(row.jobs), gpus=int(row.gpus)) for row in rows}
