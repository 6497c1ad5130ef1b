"""What a job is: its spec, its statuses, its priorities and the reasons a job fails."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELING = "canceling"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})
LEASED_STATUSES = frozenset({JobStatus.ASSIGNED, JobStatus.RUNNING})


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        """Higher runs first."""
        return {"low": 0, "normal": 1, "high": 2, "urgent": 3}[self.value]


class FailureReason(enum.StrEnum):
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    EXPIRED = "expired"
    MINER_LOST = "miner_lost"
    NO_MINER = "no_miner"
    MINER_ERROR = "miner_error"
    INVALID_INPUT = "invalid_input"


# A failed job's `error` from a miner: its message, then this line and the last lines of the job's stderr.
STDERR_TAIL_HEADING = "last lines of stderr:"


def split_stderr_tail(error: str) -> tuple[str, list[str]]:
    """A failed job's `error` as (its message, the last lines of its stderr, if the miner sent them)."""
    message, heading, tail = error.partition(f"\n{STDERR_TAIL_HEADING}\n")
    return (message, tail.split("\n")) if heading else (error, [])


# Reasons where the miner or the system is at fault, not the job: the client pays nothing for these.
SYSTEM_FAULT_REASONS = frozenset(
    {FailureReason.EXPIRED, FailureReason.MINER_LOST, FailureReason.NO_MINER, FailureReason.MINER_ERROR}
)

DEFAULT_TIMEOUT_SECONDS = 3600
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_QUEUE_TIMEOUT_SECONDS = 7 * 24 * 3600  # what a submit may ask; the coordinator's queue TTL caps it further
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def is_url(text: str) -> bool:
    """A job input that is a URL and nothing else: no miner fetches inputs from the network, so such an input
    is refused rather than handed to a job as text it would run on and be billed for."""
    return _URL.fullmatch(text.strip()) is not None


@dataclass(frozen=True)
class Requirements:
    """What hardware a job needs; `None` means any. `miner_id` pins the job to one miner (the id it was
    resolved to at submit): no other miner is handed it."""

    gpu_type: str | None = None
    gpu_count: int = 1
    min_vram_gb: float | None = None
    miner_id: str | None = None

    @property
    def needs_gpu(self) -> bool:
        return self.gpu_type is not None or self.min_vram_gb is not None


@dataclass(frozen=True)
class JobSpec:
    """Everything a client decides about a job at submit time."""

    type: str
    model: str | None
    input: Any
    input_file_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    requirements: Requirements = field(default_factory=Requirements)
    priority: Priority = Priority.NORMAL
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    # Where the settings came from, when a preset supplied them: the client's template, the workflow@version.
    template: str | None = None
    workflow: str | None = None
    # The client's own words for the job (`domain.labels`): a name, and tags to find it by.
    name: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """A job as stored: its spec plus where it is in its lifecycle."""

    id: str
    account_id: str
    spec: JobSpec
    status: JobStatus
    progress: int
    progress_message: str | None
    miner_id: str | None
    lease_id: str | None
    lease_expires_at: datetime | None
    attempt: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    assigned_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    estimated_completion: datetime | None
    queue_expires_at: datetime
    cancel_requested_at: datetime | None
    failure_reason: FailureReason | None
    error: str | None
    exit_code: int | None
    results_state: str
    result_lease_id: str | None
    retry_of: str | None
    max_cost: Decimal = Decimal(0)
    estimated_cost: Decimal = Decimal(0)
    estimated_time_seconds: int = 0
    cost: Decimal | None = None
    billed_seconds: int | None = None
    reported_started_at: datetime | None = None
    reported_ended_at: datetime | None = None
    billed_from: datetime | None = None
    billed_until: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal
