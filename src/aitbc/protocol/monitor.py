"""What the monitoring routes answer: the coordinator's health and version, who a key is, the caller's jobs
at a glance (`GET /v1/monitor/jobs`) and the fleet's capacity (`GET /v1/monitor/miners`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from aitbc.domain.job import Priority
from aitbc.protocol.jobs import Time


class HealthView(BaseModel):
    status: str
    version: str


class WhoAmIView(BaseModel):
    account: str
    role: str
    plan: str
    key_id: str


class QueuedJobView(BaseModel):
    job_id: str
    type: str
    priority: Priority
    created_at: Time
    ahead: int = Field(description="pending jobs of its type that the claim order takes before it (all accounts')")
    ahead_capped: bool = Field(description="true when `ahead` stopped counting at its cap: at least that many")


class JobRates(BaseModel):
    """Throughput of the jobs submitted in the window: how many, and what has become of them so far."""

    window_minutes: int
    submitted: int
    completed: int
    failed: int
    canceled: int
    submitted_per_minute: float
    completed_per_minute: float
    failed_per_minute: float


class WaitTimes(BaseModel):
    """From submission to start, over the most recent jobs that started."""

    sample: int = Field(description="jobs measured: those of the most recent `sample_of` that started")
    sample_of: int
    median_seconds: float | None
    p90_seconds: float | None


class JobMetricsView(BaseModel):
    component: str = "jobs"
    at: Time
    event_seq: int = Field(description="the caller's last event; `WS /v1/jobs/ws?since=` this misses nothing after")
    total: int
    by_status: dict[str, int]
    pending: int
    running: int = Field(description="assigned, running or canceling: held by a miner")
    queue: list[QueuedJobView] = Field(description="the caller's oldest pending jobs and their place in the queue")
    rates: JobRates
    waits: WaitTimes


class MinerMetricsView(BaseModel):
    component: str = "miners"
    at: Time
    live_miners: int = Field(description="miners heard from within the live window")
    slots: int = Field(description="jobs the live miners can hold at once (each one's max concurrency)")
    busy_slots: int
    free_slots: int
    gpus: dict[str, int] = Field(description="GPUs of the live miners, by model")
