"""Every move of a job goes through here: the guarded transition, its settlement when the job ends (in the
same transaction), and the events and wake-ups that follow. Callers decide *which* move; this decides what
else happens with it, once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aitbc.domain.accounts import Miner
from aitbc.domain.job import FailureReason, Job, JobStatus
from aitbc.domain.money import to_units
from aitbc.domain.transitions import Move, transition
from aitbc.services.billing import BillingService
from aitbc.storage.interfaces import Changed, GuardedMove, JobStore, LedgerEntry, StoredResult
from aitbc.streaming.hub import EventHub


@dataclass(frozen=True)
class Planned:
    """A move a caller asks for: the job as it read it, the move, and what goes with it (see `Lifecycle.move`).
    A job's later move in the same batch (start after claim) reads its job as the earlier move leaves it."""

    job: Job
    move: Move
    lease_id: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    increment_attempt: bool = False
    event_data: Mapping[str, Any] | None = None
    result: StoredResult | None = None
    lease_expired_by: datetime | None = None


class Lifecycle:
    def __init__(self, jobs: JobStore, billing: BillingService, hub: EventHub) -> None:
        self._jobs = jobs
        self._billing = billing
        self._hub = hub

    async def move(
        self,
        job: Job,
        move: Move,
        now: datetime,
        *,
        lease_id: str | None = None,
        changes: Mapping[str, Any] | None = None,
        increment_attempt: bool = False,
        event_data: Mapping[str, Any] | None = None,
        result: StoredResult | None = None,
        lease_expired_by: datetime | None = None,
    ) -> Changed | None:
        """Apply `move` to `job` (a snapshot read by the caller; the store re-checks its status and lease).
        A move that ends the job settles its hold: charge for the seconds used (the miner's reported run times
        in `changes`, capped by what we observed), release the rest, pay the miner and the platform fee."""
        planned = Planned(
            job,
            move,
            lease_id=lease_id,
            changes=changes or {},
            increment_attempt=increment_attempt,
            event_data=event_data,
            result=result,
            lease_expired_by=lease_expired_by,
        )
        (changed,) = await self.move_many([planned], now)
        return changed

    async def move_many(self, planned: Sequence[Planned], now: datetime) -> list[Changed | None]:
        """Several moves in one transaction (a miner's claim-and-start, its batch of completions), each settled
        and guarded exactly as `move` does one: a move whose guard fails is None and the others still apply."""
        miners: dict[str, Miner | None] = {}
        guarded = [await self._guarded(item, now, miners) for item in planned]
        answers = await self._jobs.transitions(guarded, now)
        requeued: list[Job] = []
        for changed in answers:
            if changed is None:
                continue
            self._hub.publish(changed.event)
            if changed.job.status is JobStatus.PENDING:
                requeued.append(changed.job)
        if requeued:
            await self._hub.work_available(requeued)
        return answers

    async def _guarded(self, item: Planned, now: datetime, miners: dict[str, Miner | None]) -> GuardedMove:
        job, move = item.job, item.move
        values = dict(item.changes)
        target = transition(move).target
        ledger: list[LedgerEntry] = []
        if target.is_terminal:
            reason_text = values.get("failure_reason")
            reason = FailureReason(reason_text) if reason_text else None
            observed_end: datetime = values.get("completed_at") or now
            ended_at = (
                job.cancel_requested_at if move is Move.FORCE_CANCEL and job.cancel_requested_at else observed_end
            )
            settlement, interval, ledger = await self._billing.settle(
                job,
                target,
                reason,
                ended_at,
                values.get("reported_started_at"),
                values.get("reported_ended_at"),
                miners,
            )
            values.update(
                cost_units=to_units(settlement.charge),
                billed_seconds=settlement.seconds,
                billed_from=interval.start if interval else None,
                billed_until=interval.end if interval else None,
            )
        return GuardedMove(
            job.id,
            move,
            lease_id=item.lease_id,
            changes=values,
            increment_attempt=item.increment_attempt,
            event_data=item.event_data,
            result=item.result,
            lease_expired_by=item.lease_expired_by,
            ledger=ledger,
        )
