"""Claiming: a miner's long poll for work, and the lease each job it takes is handed out under.

A claim answers at once when matching work is queued, and otherwise sleeps until a submit or requeue wakes
it; no one polls the database in a loop. A miner that hangs up while waiting is given nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aitbc.concurrency import unless
from aitbc.domain.accounts import Miner, Principal
from aitbc.domain.clock import Clock
from aitbc.domain.identifiers import new_lease_id
from aitbc.domain.job import FailureReason, Job, JobSpec
from aitbc.domain.matching import pinned_elsewhere, unmet_requirements
from aitbc.domain.moves import Claim, Expire, Start
from aitbc.protocol.miners import Assignment, InputFileRef
from aitbc.services.handoff import IdleClaimer, IdleClaimers
from aitbc.services.leases import LeaseGuard
from aitbc.services.lifecycle import Lifecycle, Planned
from aitbc.services.views import hardware_view
from aitbc.settings import Settings
from aitbc.storage.interfaces import Changed, GuardedMove, JobLifecycleStore, MinerStore, ResultRecords
from aitbc.streaming.hub import EventHub

CANDIDATE_BATCH = 200
FIRST_CANDIDATES = 16
FIRST_CANDIDATES_PER_JOB = 4


class ClaimService:
    def __init__(
        self,
        jobs: JobLifecycleStore,
        files: ResultRecords,
        miners: MinerStore,
        guard: LeaseGuard,
        lifecycle: Lifecycle,
        hub: EventHub,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._jobs = jobs
        self._files = files
        self._miners = miners
        self._guard = guard
        self._lifecycle = lifecycle
        self._hub = hub
        self._clock = clock
        self._settings = settings
        self._idle = IdleClaimers()

    async def claim(
        self,
        principal: Principal,
        miner_id: str,
        max_jobs: int,
        wait_seconds: float,
        gone: asyncio.Event | None = None,
        start: bool = False,
    ) -> list[Assignment]:
        """Long-poll: return at once if work is there, else sleep until a submit or requeue wakes us. When
        `gone` is set (the miner hung up) stop waiting and claim nothing: no job goes to a miner that left. With
        `start`, the jobs are started in the claim's transaction too and come back `running`."""
        miner = await self._guard.miner(principal, miner_id)
        deadline = time.monotonic() + min(wait_seconds, self._settings.max_claim_wait_seconds)
        gone = gone or asyncio.Event()
        announced: list[Job] | None = None
        while not gone.is_set() and not self._hub.stopping:  # stopping: answer now, hand out nothing
            version = self._hub.work_version()
            await self._miners.touch(miner.id, self._clock.now())
            claimed = await self._claim_now(miner, max_jobs, start, announced)
            remaining = deadline - time.monotonic()
            if claimed or remaining <= 0:
                return claimed
            handed = await self._sleep(miner, start, version, remaining, gone)
            if handed:
                return handed
            announced = self._hub.new_work(version)
        return []

    async def _sleep(
        self, miner: Miner, start: bool, version: int, timeout: float, gone: asyncio.Event
    ) -> list[Assignment]:
        """Wait for work newer than `version`, for `timeout` or until the miner hangs up, open to a submit's
        handoff meanwhile: what a submit leased to this claim in its own transaction, or nothing."""
        claimer = self._idle.join(miner, start)
        try:
            woken = unless(self._hub.wait_for_work(version, timeout), asyncio.shield(claimer.handed))
            await unless(woken, gone.wait())
        finally:
            if self._idle.leave(claimer):
                claimer.hand_nothing()  # nobody took it: nothing will be handed
        return await claimer.handed  # a submit that took this claim is storing its job: its word is the answer

    async def offer(self, job_id: str, spec: JobSpec, now: datetime) -> Offer | None:
        """A sleeping claim whose miner can run the job a submit is about to store, with the moves that lease
        (and, if it asked, start) the job to it in the submit's transaction; None if no claim sleeps here."""
        if self._hub.stopping:
            return None
        claimer = self._idle.take(spec)
        if claimer is None:
            return None
        lease_expires_at = now + timedelta(seconds=self._settings.lease_seconds)
        try:
            input_file = await self._input_file(spec)
            assignment = _assignment(job_id, spec, input_file, new_lease_id(), lease_expires_at, 1)
            assignment.model_dump_json()
        except ValueError:  # text no miner can be sent: the job stays queued, and a claim fails it (`_sendable`)
            claimer.hand_nothing()
            return None
        except BaseException:
            claimer.hand_nothing()
            raise
        claim = Claim(
            miner_id=claimer.miner.id, lease_id=assignment.lease_id, lease_expires_at=lease_expires_at, assigned_at=now
        )
        moves = [self._lifecycle.unsettled(job_id, claim, event_data={"miner_id": claimer.miner.id})]
        if claimer.start:
            begun = Start(started_at=now, lease_expires_at=lease_expires_at)
            moves.append(self._lifecycle.unsettled(job_id, begun, lease_id=assignment.lease_id))
        return Offer(claimer, assignment, moves)

    async def _claim_now(
        self, miner: Miner, max_jobs: int, start: bool, announced: list[Job] | None = None
    ) -> list[Assignment]:
        """Claim up to `max_jobs` matching queued jobs (and start them, with `start`) in one transaction; if
        another miner wins some of them, the next candidates are tried in another. Woken by a submit or requeue
        that named its jobs (`announced`: everything that became claimable while this claimer slept, since it
        found nothing before), the claimer takes those by id, with no query for what is queued; only if others
        took them all does it ask the store."""
        if announced:
            taken = await self._claim_from(iter(announced), miner, max_jobs, start)
            if taken:
                return taken
        # The head of the queue first (a few candidates per job asked for): reading and decoding hundreds of
        # queued jobs was most of a claim's cost. Only when the head holds nothing this miner can run (its jobs
        # need a GPU or model it lacks) is a longer stretch of the queue read.
        types = sorted(miner.capabilities.runtimes)
        limit = max(FIRST_CANDIDATES_PER_JOB * max_jobs, FIRST_CANDIDATES)
        while True:
            candidates = await self._jobs.queued(types, limit, miner.id)
            taken = await self._claim_from(iter(candidates), miner, max_jobs, start)
            if taken or len(candidates) < limit or limit >= CANDIDATE_BATCH:
                return taken
            limit = CANDIDATE_BATCH

    async def _claim_from(
        self, candidates: Iterator[Job], miner: Miner, max_jobs: int, start: bool
    ) -> list[Assignment]:
        assignments: list[Assignment] = []
        while len(assignments) < max_jobs:
            batch: list[tuple[Job, Assignment]] = []
            now = self._clock.now()
            for job in candidates:
                if pinned_elsewhere(job.spec, miner.id) or unmet_requirements(job.spec, miner.capabilities):
                    continue  # an announced job pinned to another miner (the store's queue skips those itself)
                planned = await self._assignment(
                    job, new_lease_id(), now + timedelta(seconds=self._settings.lease_seconds), job.attempt + 1
                )
                if await self._sendable(job, planned, now):
                    batch.append((job, planned))
                if len(assignments) + len(batch) >= max_jobs:
                    break
            if not batch:
                break
            assignments.extend(await self._take(miner, batch, now, start))
        return assignments

    async def _take(
        self, miner: Miner, batch: list[tuple[Job, Assignment]], now: datetime, start: bool
    ) -> list[Assignment]:
        """Lease each job to `miner` (each a compare-and-set: a job another miner took meanwhile is skipped),
        and with `start` start it too, all in one transaction."""
        moves: list[Planned] = []
        for job, planned in batch:
            claim = Claim(
                miner_id=miner.id,
                lease_id=planned.lease_id,
                lease_expires_at=planned.lease_expires_at,
                assigned_at=now,
            )
            moves.append(Planned(job, claim, event_data={"miner_id": miner.id}))
            if start:
                begun = Start(started_at=now, lease_expires_at=planned.lease_expires_at)
                moves.append(Planned(job, begun, lease_id=planned.lease_id))
        answers = await self._lifecycle.move_many(moves, now)
        per_job = 2 if start else 1
        taken: list[Assignment] = []
        for index, (_, planned) in enumerate(batch):
            outcome = [changed for changed in answers[index * per_job : (index + 1) * per_job] if changed]
            if not outcome:
                continue  # another miner won this one
            latest = outcome[-1].job
            taken.append(planned.model_copy(update={"attempt": latest.attempt, "status": latest.status}))
        return taken

    async def _sendable(self, job: Job, planned: Assignment, now: datetime) -> bool:
        """The claim's answer is encoded only after its leases commit: a job whose assignment cannot be encoded
        (text stored before the API checked it) would fail the whole answer, leasing every job in it to a miner
        that never hears of them. Such a job is failed here, before it is leased, and costs nothing."""
        try:
            planned.model_dump_json()
        except ValueError:
            refused = Expire(
                completed_at=now,
                failure_reason=FailureReason.INVALID_INPUT,
                error="the job's input or params hold text that cannot be sent to a miner (not valid Unicode)",
            )
            await self._lifecycle.move(job, refused, now)
            return False
        return True

    async def _assignment(self, job: Job, lease_id: str, lease_expires_at: datetime, attempt: int) -> Assignment:
        input_file = await self._input_file(job.spec)
        return _assignment(job.id, job.spec, input_file, lease_id, lease_expires_at, attempt)

    async def _input_file(self, spec: JobSpec) -> InputFileRef | None:
        if not spec.input_file_id:
            return None
        stored = await self._files.get_input_file(spec.input_file_id)
        if stored is None:
            return None
        return InputFileRef(file_id=stored.id, name=stored.name, size=stored.size, sha256=stored.sha256)


@dataclass(frozen=True)
class Offer:
    """A sleeping claim a submit took, the assignment it will get, and the moves that lease the job to it."""

    claimer: IdleClaimer
    assignment: Assignment
    moves: list[GuardedMove]

    def settle(self, moved: Sequence[Changed | None]) -> bool:
        """Tell the claim what the submit's transaction did: leased it the job (True), or nothing."""
        if not moved or not all(moved):
            self.claimer.hand_nothing()
            return False
        latest = moved[-1]
        assert latest is not None
        self.claimer.hand(
            [self.assignment.model_copy(update={"attempt": latest.job.attempt, "status": latest.job.status})]
        )
        return True

    def decline(self) -> None:
        """The submit failed before its transaction: the claim goes on sleeping."""
        self.claimer.hand_nothing()


def _assignment(
    job_id: str,
    spec: JobSpec,
    input_file: InputFileRef | None,
    lease_id: str,
    lease_expires_at: datetime,
    attempt: int,
) -> Assignment:
    return Assignment.model_validate(
        {
            "job_id": job_id,
            "lease_id": lease_id,
            "lease_expires_at": lease_expires_at,
            "type": spec.type,
            "model": spec.model,
            "input": spec.input,
            "input_file": input_file,
            "params": spec.params,
            "requirements": hardware_view(spec),
            "priority": spec.priority,
            "timeout_seconds": spec.timeout_seconds,
            "attempt": attempt,
        }
    )
