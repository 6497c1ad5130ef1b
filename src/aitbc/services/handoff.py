"""Claims asleep on this coordinator, so that a submit can lease its new job to one of them in the transaction
that stores it: the woken claim then answers at once, with no second write and no query for the queue.

A claim that found nothing to take joins `IdleClaimers` while it sleeps and leaves when it wakes. A submit
`take`s the first one (in the order they fell asleep) whose miner can run the new job; from then on that claim
waits for the submit's word (`hand`: the assignments its commit leased, or nothing if the submit failed or was
a replay) before it does anything else, so a job is never leased to a claim that already answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from aitbc.domain.accounts import Miner
from aitbc.domain.job import JobSpec
from aitbc.domain.matching import can_take
from aitbc.protocol.miners import Assignment


@dataclass(eq=False)
class IdleClaimer:
    """One sleeping claim: its miner, whether it starts the jobs it takes, and the submit's word once taken."""

    miner: Miner
    start: bool
    handed: asyncio.Future[list[Assignment]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def hand(self, assignments: Sequence[Assignment]) -> None:
        """The submit that took this claim is done: these jobs are leased to it (none: go on as before)."""
        if not self.handed.done():
            self.handed.set_result(list(assignments))

    def hand_nothing(self) -> None:
        """Nothing is leased to this claim (the submit failed, was a replay, or nobody took it): it goes on."""
        self.hand(())


class IdleClaimers:
    def __init__(self) -> None:
        self._asleep: dict[IdleClaimer, None] = {}  # insertion-ordered: the longest asleep first

    def join(self, miner: Miner, start: bool) -> IdleClaimer:
        claimer = IdleClaimer(miner, start)
        self._asleep[claimer] = None
        return claimer

    def leave(self, claimer: IdleClaimer) -> bool:
        """Stop offering `claimer` to submits; False if a submit took it already (then await its `handed`)."""
        if claimer not in self._asleep:
            return False
        del self._asleep[claimer]
        return True

    def take(self, spec: JobSpec) -> IdleClaimer | None:
        """The longest-asleep claim whose miner may take `spec` (it can run it, and the job is not pinned to
        another miner), no longer offered to anyone else."""
        for claimer in self._asleep:
            if can_take(spec, claimer.miner.id, claimer.miner.capabilities):
                del self._asleep[claimer]
                return claimer
        return None
