"""The job lifecycle as one table: every move a job can make, from which statuses, to which status.

    pending → assigned → running → completed
       ↓         ↓          ↓
     failed    failed     failed
       ↓         ↓          ↓
    canceled  canceling → canceled

Storage applies each move as a compare-and-set (``UPDATE … WHERE status IN (sources)``), so two racing
actors can never both win, and a move from a status not listed here is refused.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aitbc.domain.job import JobStatus

P, A, R = JobStatus.PENDING, JobStatus.ASSIGNED, JobStatus.RUNNING
CING = JobStatus.CANCELING


class Move(enum.StrEnum):
    CLAIM = "claim"
    START = "start"
    COMPLETE = "complete"
    FAIL = "fail"
    REQUEUE = "requeue"
    EXPIRE = "expire"
    CANCEL_PENDING = "cancel_pending"
    REQUEST_CANCEL = "request_cancel"
    CONFIRM_CANCEL = "confirm_cancel"
    FORCE_CANCEL = "force_cancel"


@dataclass(frozen=True)
class Transition:
    move: Move
    sources: frozenset[JobStatus]
    target: JobStatus
    needs_lease: bool


TRANSITIONS: dict[Move, Transition] = {
    t.move: t
    for t in (
        Transition(Move.CLAIM, frozenset({P}), A, needs_lease=False),
        Transition(Move.START, frozenset({A}), R, needs_lease=True),
        Transition(Move.COMPLETE, frozenset({A, R}), JobStatus.COMPLETED, needs_lease=True),
        Transition(Move.FAIL, frozenset({A, R}), JobStatus.FAILED, needs_lease=True),
        Transition(Move.REQUEUE, frozenset({A, R}), P, needs_lease=True),
        Transition(Move.EXPIRE, frozenset({P}), JobStatus.FAILED, needs_lease=False),
        Transition(Move.CANCEL_PENDING, frozenset({P}), JobStatus.CANCELED, needs_lease=False),
        Transition(Move.REQUEST_CANCEL, frozenset({A, R}), CING, needs_lease=False),
        # The miner confirms a cancel, or its upload/failure report arrives after the cancel was asked for.
        Transition(Move.CONFIRM_CANCEL, frozenset({CING}), JobStatus.CANCELED, needs_lease=True),
        # The miner did not confirm in time: the coordinator cancels anyway and revokes the lease.
        Transition(Move.FORCE_CANCEL, frozenset({CING}), JobStatus.CANCELED, needs_lease=False),
    )
}


def transition(move: Move) -> Transition:
    return TRANSITIONS[move]
