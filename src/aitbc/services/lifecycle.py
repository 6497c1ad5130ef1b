"""Every move of a job goes through here: the guarded transition, its settlement when the job ends (in the
same transaction), and the events and wake-ups that follow. Callers decide *which* move; this decides what
else happens with it, once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_never

from aitbc.domain.accounts import Miner
from aitbc.domain.events import JobEvent
from aitbc.domain.job import FailureReason, Job, JobStatus
from aitbc.domain.money import to_units
from aitbc.domain.moves import (
    Billed,
    CancelPending,
    Complete,
    ConfirmCancel,
    Ending,
    Expire,
    Fail,
    ForceCancel,
    MinerReport,
    WriteSet,
)
from aitbc.domain.transitions import transition
from aitbc.services.billing import BillingService
from aitbc.services.spending import SpendingAlerts
from aitbc.storage.interfaces import Changed, GuardedMove, JobLifecycleStore, LedgerEntry, NewJob, StoredResult
from aitbc.streaming.hub import EventHub


@dataclass(frozen=True)
class Planned:
    """A move a caller asks for: the job as it read it, the move's write-set, and what goes with it (see
    `Lifecycle.move`). A job's later move in the same batch (start after claim) reads its job as the earlier
    move leaves it."""

    job: Job
    write: WriteSet
    lease_id: str | None = None
    event_data: Mapping[str, Any] | None = None
    result: StoredResult | None = None
    lease_expired_by: datetime | None = None


def _ending(write: Ending) -> tuple[FailureReason | None, MinerReport | None]:
    """Why a move that ends its job failed it (if it did), and the miner's report of the work (if it sent one):
    what its settlement reads besides the job."""
    match write:
        case Complete() | ConfirmCancel():
            return None, write.report
        case Fail():
            return write.failure_reason, write.report
        case Expire():
            return write.failure_reason, None
        case CancelPending() | ForceCancel():
            return None, None
    assert_never(write)


class Lifecycle:
    def __init__(
        self, jobs: JobLifecycleStore, billing: BillingService, hub: EventHub, alerts: SpendingAlerts | None = None
    ) -> None:
        self._jobs = jobs
        self._billing = billing
        self._hub = hub
        self._alerts = alerts or SpendingAlerts(hub)

    async def move(
        self,
        job: Job,
        write: WriteSet,
        now: datetime,
        *,
        lease_id: str | None = None,
        event_data: Mapping[str, Any] | None = None,
        result: StoredResult | None = None,
        lease_expired_by: datetime | None = None,
    ) -> Changed | None:
        """Apply the move of `write` to `job` (a snapshot read by the caller; the store re-checks its status and
        lease). A move that ends the job settles its hold: charge for the seconds used (the miner's reported
        run times in its report, capped by what we observed), release the rest, pay the miner and the
        platform fee."""
        planned = Planned(
            job,
            write,
            lease_id=lease_id,
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
            if changed.alerts:  # a spending alert its settlement reached, after the job's own event
                self._alerts.emit(changed.alerts)
            if changed.job.status is JobStatus.PENDING:
                requeued.append(changed.job)
        if requeued:
            await self._hub.work_available(requeued)
        return answers

    def unsettled(
        self, job_id: str, write: WriteSet, *, lease_id: str | None = None, event_data: Mapping[str, Any] | None = None
    ) -> GuardedMove:
        """A move that settles nothing (it does not end its job), guarded as `move` guards one: for a job not
        stored yet, whose moves go with its insert (`insert`)."""
        if transition(write.move).target.is_terminal:
            raise TypeError(f"{write.move.value} ends a job: it is settled, so it needs the job (`move`)")
        return GuardedMove(job_id, write, lease_id=lease_id, event_data=event_data)

    async def insert(
        self, new: NewJob, now: datetime, max_active: int | None, then: Sequence[GuardedMove] = ()
    ) -> tuple[Job, JobEvent | None, list[Changed | None]]:
        """Store a submitted job and, in the same transaction, the moves `then` of it (a sleeping miner's claim
        and start, see `ClaimService.offer`); publish the job's first event and the moves' events, in order."""
        job, event, moved = await self._jobs.insert_job_and_move(new, now, max_active, then)
        if event is not None:
            self._hub.publish(event)
        for changed in moved:
            if changed is not None:
                self._hub.publish(changed.event)
        return job, event, moved

    async def _guarded(self, item: Planned, now: datetime, miners: dict[str, Miner | None]) -> GuardedMove:
        job, write = item.job, item.write
        target = transition(write.move).target
        ledger: list[LedgerEntry] = []
        billed: Billed | None = None
        if target.is_terminal:
            if not isinstance(write, Ending):
                raise TypeError(f"{write.move.value} ends a job but {type(write).__name__} says nothing of its end")
            reason, report = _ending(write)
            ended_at = write.completed_at
            if isinstance(write, ForceCancel) and job.cancel_requested_at:
                ended_at = job.cancel_requested_at
            settlement, interval, ledger = await self._billing.settle(
                job,
                target,
                reason,
                ended_at,
                report.started_at if report else None,
                report.ended_at if report else None,
                miners,
            )
            billed = Billed(
                cost_units=to_units(settlement.charge),
                billed_seconds=settlement.seconds,
                billed_from=interval.start if interval else None,
                billed_until=interval.end if interval else None,
            )
        return GuardedMove(
            job.id,
            write,
            lease_id=item.lease_id,
            event_data=item.event_data,
            result=item.result,
            lease_expired_by=item.lease_expired_by,
            ledger=ledger,
            billed=billed,
        )
