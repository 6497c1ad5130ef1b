"""Who may act on which job: every miner call names its miner, and a call on a job names its lease.

The checks live here once, for claiming, running and finishing alike: a miner is found only by its own
account (or an admin); another miner's job is the same 404 as no job, so nothing about it leaks; a lease
that is no longer the job's current one is a 409 and changes nothing, so a miner that was presumed lost can
never overwrite the work of its successor.
"""

from __future__ import annotations

from collections.abc import Sequence

from aitbc.domain.accounts import Miner, Principal
from aitbc.domain.errors import Conflict, NotFound
from aitbc.domain.job import LEASED_STATUSES, Job, JobStatus
from aitbc.domain.plans import Role
from aitbc.protocol.miners import JobDirective
from aitbc.storage.interfaces import JobReadModel, MinerStore

HELD_STATUSES = LEASED_STATUSES | {JobStatus.CANCELING}
"""A job in these statuses is held under its lease: its miner still reports on it and uploads for it."""


def directive(job: Job) -> JobDirective:
    """What every call on a job answers: where the job is, and whether its miner should stop."""
    return JobDirective(
        job_id=job.id,
        status=job.status,
        cancel=job.status is JobStatus.CANCELING,
        lease_expires_at=job.lease_expires_at,
    )


def check_lease(job: Job, lease_id: str) -> None:
    if job.lease_id != lease_id or job.status not in HELD_STATUSES:
        raise Conflict(f"lease {lease_id} is no longer current for job {job.id} (job is {job.status.value})")


def _owned(miner: Miner, job_id: str, job: Job | None) -> Job:
    if job is None or job.miner_id != miner.id:
        raise NotFound(f"job {job_id} not found")
    return job


class LeaseGuard:
    def __init__(self, jobs: JobReadModel, miners: MinerStore) -> None:
        self._jobs = jobs
        self._miners = miners

    async def miner(self, principal: Principal, miner_id: str) -> Miner:
        miner = await self._miners.get_miner(miner_id)
        if miner is None or (principal.role is not Role.ADMIN and miner.account_id != principal.account.id):
            raise NotFound(f"miner {miner_id} not found: register first")
        return miner

    async def owned_job(self, miner: Miner, job_id: str) -> Job:
        """The job, if this miner holds it or held it last. Ownership is checked before anything else: another
        miner's job (another tenant's or a sibling's) is the same 404 as no job at all, whatever lease is named,
        so nothing about it leaks and no lease of it can be used."""
        return _owned(miner, job_id, await self._jobs.get_job(job_id))

    async def owned_jobs(self, miner: Miner, job_ids: Sequence[str]) -> dict[str, Job | NotFound]:
        """`owned_job` for each id, read in one statement: the job, or the NotFound `owned_job` raises."""
        found = await self._jobs.get_jobs(job_ids)
        answers: dict[str, Job | NotFound] = {}
        for job_id in job_ids:
            try:
                answers[job_id] = _owned(miner, job_id, found.get(job_id))
            except NotFound as error:
                answers[job_id] = error
        return answers

    async def held_job(self, principal: Principal, miner_id: str, job_id: str, lease_id: str) -> Job:
        """The job, if the caller's miner holds it under `lease_id` now."""
        job = await self.owned_job(await self.miner(principal, miner_id), job_id)
        check_lease(job, lease_id)
        return job
