"""What a client sees at a glance (`aitbc monitor …`, `aitbc blockchain status`): who its key is, its jobs —
counts by status, where its pending jobs stand in the queue, the last hour's throughput, how long jobs wait
to start — and how much room the live miners have.

Counts come from the kept `job_counts` rows; everything else from bounded reads (`MonitorStore`), so a
monitor refresh costs the same whatever the size of the account's history.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock
from aitbc.domain.job import LEASED_STATUSES, JobStatus, Priority
from aitbc.protocol.monitor import JobMetricsView, JobRates, MinerMetricsView, QueuedJobView, WaitTimes, WhoAmIView
from aitbc.services.jobs import JobService
from aitbc.services.miner_registry import LiveMiners
from aitbc.storage.interfaces import JobReadModel, MonitorStore

WINDOW_MINUTES = 60
QUEUE_SHOWN = 10  # the caller's oldest pending jobs whose queue places are counted
AHEAD_CAP = 10_000  # a queue place past this is reported as "at least"
WAIT_SAMPLE = 200  # the most recent jobs the waits are measured over
HELD = LEASED_STATUSES | {JobStatus.CANCELING}


def percentile(values: list[float], fraction: float) -> float | None:
    """The `fraction` percentile, interpolated between the nearest ranks; None of nothing."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    value = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return round(value, 3)


def whoami(principal: Principal) -> WhoAmIView:
    return WhoAmIView(
        account=principal.account.name,
        role=principal.role.value,
        plan=principal.account.plan.value,
        key_id=principal.key_id,
    )


class MonitorService:
    def __init__(
        self, reads: JobReadModel, monitor: MonitorStore, miners: LiveMiners, jobs: JobService, clock: Clock
    ) -> None:
        self._reads = reads
        self._monitor = monitor
        self._miners = miners
        self._jobs = jobs
        self._clock = clock

    async def jobs(self, principal: Principal) -> JobMetricsView:
        now = self._clock.now()
        account_id = principal.account.id
        counts = await self._reads.job_counts(account_id)
        since = now - timedelta(minutes=WINDOW_MINUTES)
        activity = await self._monitor.job_activity(account_id, since, QUEUE_SHOWN, AHEAD_CAP, WAIT_SAMPLE)
        window = activity.created_since

        def per_minute(number: int) -> float:
            return round(number / WINDOW_MINUTES, 3)

        submitted = sum(window.values())
        finished = {status: window.get(status.value, 0) for status in (JobStatus.COMPLETED, JobStatus.FAILED)}
        return JobMetricsView(
            at=now,
            event_seq=activity.event_seq,
            total=sum(counts.values()),
            by_status={status.value: counts.get(status, 0) for status in JobStatus},
            pending=counts.get(JobStatus.PENDING, 0),
            running=sum(counts.get(status, 0) for status in HELD),
            queue=[
                QueuedJobView(
                    job_id=place.job_id,
                    type=place.type,
                    priority=Priority(place.priority),
                    created_at=place.created_at,
                    ahead=place.ahead,
                    ahead_capped=place.capped,
                )
                for place in activity.queue
            ],
            rates=JobRates(
                window_minutes=WINDOW_MINUTES,
                submitted=submitted,
                completed=finished[JobStatus.COMPLETED],
                failed=finished[JobStatus.FAILED],
                canceled=window.get(JobStatus.CANCELED.value, 0),
                submitted_per_minute=per_minute(submitted),
                completed_per_minute=per_minute(finished[JobStatus.COMPLETED]),
                failed_per_minute=per_minute(finished[JobStatus.FAILED]),
            ),
            waits=WaitTimes(
                sample=len(activity.waits),
                sample_of=WAIT_SAMPLE,
                median_seconds=percentile(activity.waits, 0.5),
                p90_seconds=percentile(activity.waits, 0.9),
            ),
        )

    async def miners(self) -> MinerMetricsView:
        """The live miners (from the in-memory view) and the jobs they hold (one indexed count)."""
        live = self._miners.live(self._jobs.miners_since())
        slots = sum(miner.max_concurrency for miner in live)
        busy = await self._monitor.held_by([miner.id for miner in live])
        gpus = Counter(gpu.model for miner in live for gpu in miner.capabilities.gpus)
        return MinerMetricsView(
            at=self._clock.now(),
            live_miners=len(live),
            slots=slots,
            busy_slots=min(busy, slots),
            free_slots=max(slots - busy, 0),
            gpus=dict(sorted(gpus.items())),
        )
