"""What each move of the transition table writes on its job: one frozen type per move, bound to its `Move`.

A caller names a move by building its write-set (`Claim(...)`, `Requeue(...)`), so it cannot pair a move with
another move's fields, and mypy sees every field and its type. The transition table (`transitions`) still
decides from which statuses a move applies and whether it needs the job's lease; the store turns a write-set
into column values in one place. What a move clears or fixes (a requeue forgets its miner, a claim starts at
0 %) is part of the move, not of the caller's write-set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from aitbc.domain.job import FailureReason
from aitbc.domain.package import ResultsState
from aitbc.domain.transitions import Move


@dataclass(frozen=True, slots=True)
class MinerReport:
    """What a miner's complete or fail reports, kept with the job: the lease its result came under, whether
    it left results, its exit code and its own start and end of the work (billing caps them by what we saw)."""

    result_lease_id: str
    results_state: ResultsState
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A miner takes a pending job under a new lease; the attempt counts up and progress starts from 0 %."""

    move: ClassVar[Move] = Move.CLAIM
    miner_id: str
    lease_id: str
    lease_expires_at: datetime
    assigned_at: datetime


@dataclass(frozen=True, slots=True)
class Start:
    """The miner began the work; its lease runs a full period from now."""

    move: ClassVar[Move] = Move.START
    started_at: datetime
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class Complete:
    """The miner finished the job (progress 100 %)."""

    move: ClassVar[Move] = Move.COMPLETE
    completed_at: datetime
    report: MinerReport


@dataclass(frozen=True, slots=True)
class Fail:
    """The job failed for good: the miner's report of it, or none when the coordinator fails it (lost miner)."""

    move: ClassVar[Move] = Move.FAIL
    completed_at: datetime
    failure_reason: FailureReason
    error: str
    report: MinerReport | None = None


@dataclass(frozen=True, slots=True)
class Requeue:
    """Back to the queue, whoever sends it (a retryable failure, a lost lease): the job forgets its miner,
    lease and times and waits again from 0 %, with `error` saying why."""

    move: ClassVar[Move] = Move.REQUEUE
    error: str


@dataclass(frozen=True, slots=True)
class Expire:
    """A pending job fails before any miner took it (its queue TTL passed, or it cannot be sent to one)."""

    move: ClassVar[Move] = Move.EXPIRE
    completed_at: datetime
    failure_reason: FailureReason
    error: str


@dataclass(frozen=True, slots=True)
class CancelPending:
    """The client cancels a job no miner took: asked for and done at `completed_at`."""

    move: ClassVar[Move] = Move.CANCEL_PENDING
    completed_at: datetime


@dataclass(frozen=True, slots=True)
class RequestCancel:
    """The client cancels a leased job: its miner has until `lease_expires_at` to confirm."""

    move: ClassVar[Move] = Move.REQUEST_CANCEL
    cancel_requested_at: datetime
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class ConfirmCancel:
    """The miner stopped a job being canceled (its complete or fail arrived after the cancel was asked)."""

    move: ClassVar[Move] = Move.CONFIRM_CANCEL
    completed_at: datetime
    report: MinerReport


@dataclass(frozen=True, slots=True)
class ForceCancel:
    """The miner did not confirm a cancel in time: canceled anyway, its lease revoked."""

    move: ClassVar[Move] = Move.FORCE_CANCEL
    completed_at: datetime
    error: str


WriteSet = (
    Claim | Start | Complete | Fail | Requeue | Expire | CancelPending | RequestCancel | ConfirmCancel | ForceCancel
)
Ending = Complete | Fail | Expire | CancelPending | ConfirmCancel | ForceCancel
"""The write-sets of the moves that end a job (each writes `completed_at`); the lifecycle settles them."""


@dataclass(frozen=True, slots=True)
class Billed:
    """What settling a job's end charged, written with the move that ends it: the charge in whole nano-AITBC,
    the seconds billed and the interval they cover (None when nothing ran)."""

    cost_units: int
    billed_seconds: int
    billed_from: datetime | None
    billed_until: datetime | None
