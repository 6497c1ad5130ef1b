"""Every move of a job goes through here: the guarded transition, its settlement when the job ends (in the
same transaction), and the events and wake-ups that follow. Callers decide *which* move; this decides what
else happens with it, once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aitbc.domain.job import FailureReason, Job, JobStatus
from aitbc.domain.money import to_units
from aitbc.domain.transitions import Move, transition
from aitbc.services.billing import BillingService
from aitbc.storage.interfaces import Changed, JobStore, LedgerEntry, StoredResult
from aitbc.streaming.hub import EventHub


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
        values = dict(changes or {})
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
                job, target, reason, ended_at, values.get("reported_started_at"), values.get("reported_ended_at")
            )
            values.update(
                cost_units=to_units(settlement.charge),
                billed_seconds=settlement.seconds,
                billed_from=interval.start if interval else None,
                billed_until=interval.end if interval else None,
            )
        changed = await self._jobs.transition(
            job.id,
            move,
            now,
            lease_id=lease_id,
            changes=values,
            increment_attempt=increment_attempt,
            event_data=event_data,
            result=result,
            lease_expired_by=lease_expired_by,
            ledger=ledger,
        )
        if changed is None:
            return None
        self._hub.publish(changed.event)
        if target is JobStatus.PENDING:
            await self._hub.work_available()
        return changed
