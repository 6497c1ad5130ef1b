"""Prices: a rate per GPU-hour by GPU model, a rate for CPU-only work, and a multiplier by priority.

Billing is per second: every started second counts (ceil), from the start to the end of the job as the
miner reports them, within what the coordinator saw (see `billed_interval`). The hold taken at submit is the
most a job can cost: its timeout at its rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from aitbc.domain.job import SYSTEM_FAULT_REASONS, FailureReason, JobStatus, Priority, Requirements
from aitbc.domain.matching import normalize_gpu_model
from aitbc.domain.money import from_units, to_units

DEFAULT_GPU_HOURLY: dict[str, Decimal] = {
    "v100": Decimal("0.05"),
    "a100": Decimal("0.10"),
    "rtx3090": Decimal("0.03"),
    "rtx4090": Decimal("0.04"),
}
DEFAULT_CPU_HOURLY = Decimal("0.01")
PRIORITY_MULTIPLIER: dict[Priority, Decimal] = {
    Priority.LOW: Decimal("0.8"),
    Priority.NORMAL: Decimal("1.0"),
    Priority.HIGH: Decimal("1.5"),
    Priority.URGENT: Decimal("2.0"),
}


@dataclass(frozen=True)
class PriceTable:
    gpu_hourly: dict[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_GPU_HOURLY))
    cpu_hourly: Decimal = DEFAULT_CPU_HOURLY
    multipliers: dict[Priority, Decimal] = field(default_factory=lambda: dict(PRIORITY_MULTIPLIER))
    # The platform's share of every charge; the miner is credited the rest.
    fee_rate: Decimal = Decimal("0.10")

    def hourly(self, gpu_model: str | None) -> Decimal:
        """The rate of one GPU of this model; an unknown model costs as much as the dearest known one."""
        if gpu_model is None:
            return self.cpu_hourly
        wanted = normalize_gpu_model(gpu_model)
        for name, price in self.gpu_hourly.items():
            if wanted == name or wanted.startswith(name):
                return price
        return max(self.gpu_hourly.values())

    def rate_per_hour(self, requirements: Requirements, priority: Priority, miner_gpu: str | None = None) -> Decimal:
        """What an hour of this job costs: the requested GPU model's rate (or, for a job that only asks for
        VRAM, the rate of the GPU it ran on, or the dearest one before it runs) × GPU count × priority; a job
        that asks for no GPU pays the CPU rate."""
        if requirements.gpu_type is not None:
            hourly = self.hourly(requirements.gpu_type) * requirements.gpu_count
        elif requirements.min_vram_gb is not None or requirements.gpu_count > 1:
            model_hourly = self.hourly(miner_gpu) if miner_gpu else max(self.gpu_hourly.values())
            hourly = model_hourly * requirements.gpu_count
        else:
            hourly = self.cpu_hourly
        return hourly * self.multipliers[priority]

    def rate_per_second(self, requirements: Requirements, priority: Priority, miner_gpu: str | None = None) -> Decimal:
        return self.rate_per_hour(requirements, priority, miner_gpu) / Decimal(3600)

    def hold(self, requirements: Requirements, priority: Priority, timeout_seconds: int) -> Decimal:
        return from_units(to_units(self.rate_per_second(requirements, priority) * timeout_seconds))


@dataclass(frozen=True)
class BilledInterval:
    """The run times billing used: from `start` to `end`."""

    start: datetime
    end: datetime


def billed_interval(
    observed_start: datetime | None,
    observed_end: datetime,
    reported_start: datetime | None = None,
    reported_end: datetime | None = None,
) -> BilledInterval | None:
    """The miner knows when the work ran; the coordinator only when it heard of it, which after an outage can
    be long after the work ended (a client must not pay for the coordinator's downtime). So the charge runs
    from the miner's reported start to its reported end, but a report can only shorten the coordinator's own
    started→ended interval, never stretch it: a miner cannot bill for time nobody saw. Without a report, the
    observed interval. A job that never started has none."""
    if observed_start is None:
        return None
    start = max(observed_start, reported_start) if reported_start is not None else observed_start
    end = min(observed_end, reported_end) if reported_end is not None else observed_end
    start = min(start, observed_end)
    return BilledInterval(start=start, end=max(start, end))


def billable_seconds(started_at: datetime | None, ended_at: datetime, timeout_seconds: int) -> int:
    """Every started second counts, up to the job's timeout; a job that never started costs nothing."""
    if started_at is None:
        return 0
    elapsed = (ended_at - started_at).total_seconds()
    return min(timeout_seconds, max(0, math.ceil(elapsed - 1e-6)))


def is_billable(status: JobStatus, reason: FailureReason | None) -> bool:
    """Completed and canceled jobs pay for what they used, and so do jobs that failed by their own fault;
    jobs failed by a miner or the system pay nothing."""
    if status is JobStatus.FAILED:
        return reason is not None and reason not in SYSTEM_FAULT_REASONS
    return status in (JobStatus.COMPLETED, JobStatus.CANCELED)


@dataclass(frozen=True)
class Settlement:
    seconds: int
    charge: Decimal
    release: Decimal
    miner_credit: Decimal
    fee: Decimal


def settle(hold: Decimal, rate_per_second: Decimal, seconds: int, fee_rate: Decimal) -> Settlement:
    """Split a job's hold into what it is charged (never more than the hold) and what goes back; split the
    charge between the miner and the platform so that nothing is created or lost."""
    charge = min(hold, from_units(to_units(rate_per_second * seconds)))
    fee = from_units(to_units(charge * fee_rate))
    return Settlement(seconds=seconds, charge=charge, release=hold - charge, miner_credit=charge - fee, fee=fee)
