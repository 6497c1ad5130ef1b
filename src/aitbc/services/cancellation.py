"""Cancelling jobs, one by id or many at once (every unfinished job of a client's that a filter matches), by
the one rule: a pending job is canceled at once, an assigned or running one becomes `canceling` and its miner
is told to stop it, a canceling one is left to its miner, and an ended one cannot be canceled (nothing
changes). Every move goes through the lifecycle (guarded, settled, published); many jobs' moves share one
transaction. A job that moved between the read and the write is read again and decided again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from aitbc.domain.clock import Clock
from aitbc.domain.job import Job, JobStatus
from aitbc.domain.moves import CancelPending, RequestCancel
from aitbc.services.lifecycle import Lifecycle, Planned
from aitbc.storage.interfaces import JobReadModel
from aitbc.streaming.hub import EventHub

# The statuses a cancel moves a job out of (a canceling job is already on its way).
CANCELABLE = (JobStatus.PENDING, JobStatus.ASSIGNED, JobStatus.RUNNING)
# How many times a job that keeps moving under a cancel is read again before the cancel gives up on it.
ROUNDS = 5


@dataclass(frozen=True)
class Cancellation:
    """What a cancel did: `canceled`, `canceling` (the miner is stopping it) or `failed` (nothing changed)."""

    outcome: Literal["canceling", "canceled", "failed"]
    job: Job
    message: str
    reason: str | None = None

    @property
    def status(self) -> JobStatus:
        return self.job.status


def _standing(job: Job) -> Cancellation | None:
    """The answer for a job no move is needed for (or possible on); None if it is to be moved."""
    if job.status is JobStatus.CANCELING:
        return Cancellation("canceling", job, "cancellation already requested; the miner is stopping it")
    if job.status.is_terminal:
        return Cancellation(
            "failed", job, f"job already {job.status.value}; nothing was changed", reason=f"already_{job.status.value}"
        )
    return None


class Canceller:
    def __init__(
        self, reads: JobReadModel, lifecycle: Lifecycle, hub: EventHub, clock: Clock, grace_seconds: float
    ) -> None:
        self._reads = reads
        self._lifecycle = lifecycle
        self._hub = hub
        self._clock = clock
        self._grace = timedelta(seconds=grace_seconds)

    def _move(self, job: Job, now: datetime) -> Planned:
        if job.status is JobStatus.PENDING:
            return Planned(job, CancelPending(completed_at=now))
        return Planned(job, RequestCancel(cancel_requested_at=now, lease_expires_at=now + self._grace))

    async def cancel_many(self, jobs: Sequence[Job]) -> list[Cancellation | None]:
        """Cancel each job (as read by the caller, who checked it may), the moves of each round in one
        transaction: an answer per job, in order; None for a job that kept moving through every round."""
        answers: list[Cancellation | None] = [None] * len(jobs)
        todo = list(enumerate(jobs))
        for _ in range(ROUNDS):
            now = self._clock.now()
            moving: list[tuple[int, Job]] = []
            for index, job in todo:
                standing = _standing(job)
                if standing is None:
                    moving.append((index, job))
                else:
                    answers[index] = standing
            if not moving:
                return answers
            changed = await self._lifecycle.move_many([self._move(job, now) for _, job in moving], now)
            miners: set[str] = set()
            stale: list[int] = []
            for (index, job), moved in zip(moving, changed, strict=True):
                if moved is None:
                    stale.append(index)
                elif job.status is JobStatus.PENDING:
                    answers[index] = Cancellation("canceled", moved.job, "canceled before any miner took it")
                else:
                    answers[index] = Cancellation("canceling", moved.job, "the miner has been told to stop the job")
                    if job.miner_id:
                        miners.add(job.miner_id)
            for miner_id in sorted(miners):
                self._hub.notify_miner(miner_id)
            if not stale:
                return answers
            again = await self._reads.get_jobs([jobs[index].id for index in stale])
            todo = [(index, again[jobs[index].id]) for index in stale if jobs[index].id in again]
        return answers
