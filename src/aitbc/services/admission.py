"""Saying no at submit: a job that no connected miner could run is refused there and then (422, saying what it
needs and what the connected miners offer), not queued for a day with the client's credit held.

A job that a registered miner could run, one not connected now (it was heard from within the queue TTL: a
restart, a network blip), is accepted with a warning naming it. A client who expects another miner to connect
asks for it: with a queue timeout (`queue_timeout_seconds`,
`--queue-timeout`) the job is accepted with a warning, waits at most that long, and then expires at no charge.
With no miner connected at all (a coordinator starting, its miners on their way) the job is accepted with a
warning: there is nothing to compare it with. All of it is decided from the in-memory view of live miners:
a submit costs no query for it.

What a pending job waits for (`waiting_for`) is said the same way, in one reason: that of the miner that comes
closest to running it, not the reasons of different miners merged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from aitbc.domain.accounts import Miner
from aitbc.domain.errors import InvalidInput
from aitbc.domain.job import JobSpec
from aitbc.domain.matching import gpu_models, unmet_requirements

NO_MINER = "no miner is connected"
FREE_MINER = "waiting for a free miner"


@dataclass(frozen=True)
class Unfit:
    """Why no connected miner can run a job: the reasons of the closest one."""

    miner: Miner
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"no connected miner can run it ({'; '.join(self.reasons)})"


def closest_unfit(spec: JobSpec, miners: Sequence[Miner]) -> Unfit | None:
    """None when one of `miners` can run `spec`; else the miner that lacks the fewest things, and what."""
    closest: Unfit | None = None
    for miner in miners:
        unmet = unmet_requirements(spec, miner.capabilities)
        if not unmet:
            return None
        if closest is None or len(unmet) < len(closest.reasons):
            closest = Unfit(miner, tuple(unmet))
    return closest


def waiting_reason(spec: JobSpec, miners: Sequence[Miner]) -> str:
    """Why a pending (unpinned) job has not been taken, in one reason."""
    if not miners:
        return NO_MINER
    unfit = closest_unfit(spec, miners)
    return FREE_MINER if unfit is None else str(unfit)


def on_offer(miners: Sequence[Miner]) -> str:
    """What the connected miners offer, in one line: runtimes, models, GPU models."""
    runtimes = sorted({runtime for miner in miners for runtime in miner.capabilities.runtimes})
    models = sorted({model for miner in miners for model in miner.capabilities.models})
    gpus = sorted({gpu for miner in miners for gpu in gpu_models(miner.capabilities)})
    parts = [f"runtimes {', '.join(runtimes)}"]
    if models:
        parts.append(f"models {', '.join(models)}")
    parts.append(f"GPUs {', '.join(gpus)}" if gpus else "no GPU")
    return "; ".join(parts)


class NoMinerCanRun(InvalidInput):
    """No connected miner can run the job, and it sets no queue timeout."""


def admit(spec: JobSpec, miners: Sequence[Miner], queue_timeout_seconds: int | None) -> tuple[str, ...]:
    """The warnings a job is accepted with (none when a connected miner can run it); raises `NoMinerCanRun`
    when none can and the client set no queue timeout (the caller may still find a registered miner that
    can: `offline_fit`). A pinned job is checked against its miner instead (`services/pinning.py`)."""
    if spec.requirements.miner_id is not None:
        return ()
    waits = (
        f"it waits at most {queue_timeout_seconds} s for one, then expires at no charge"
        if queue_timeout_seconds is not None
        else "it waits until one connects"
    )
    if not miners:
        return (f"{NO_MINER} now: {waits}",)
    unfit = closest_unfit(spec, miners)
    if unfit is None:
        return ()
    if queue_timeout_seconds is None:
        raise NoMinerCanRun(
            f"{unfit}; connected miners offer {on_offer(miners)}. Change the job, or set a queue timeout "
            "(queue_timeout_seconds; the CLI's --queue-timeout) to wait for a miner that can run it"
        )
    return (f"{unfit}: {waits}",)


def offline_fit(spec: JobSpec, registered: Sequence[Miner], now: datetime) -> tuple[str, ...] | None:
    """The warning a job is accepted with when no connected miner can run it but a registered one, not
    connected now, can (the one heard from last); None when none can."""
    able = [miner for miner in registered if not unmet_requirements(spec, miner.capabilities)]
    if not able:
        return None
    latest = max(able, key=lambda miner: miner.last_seen_at)
    ago = max(0, round((now - latest.last_seen_at).total_seconds()))
    return (
        f"no connected miner can run it now; miner {latest.name!r}, which can, was last heard from {ago} s ago: "
        "the job waits for it or another",
    )
