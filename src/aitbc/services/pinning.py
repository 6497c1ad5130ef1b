"""Pinned jobs (`aitbc client submit --agent-id`): a job that runs on one named miner, or fails fast.

At submit the miner is named by its id or its name and resolved to its id, which the job keeps. It is refused
there and then if no miner has that id or name (404), if the name is ambiguous (422), if the miner cannot run
the job (422: a runtime, model or GPU it did not register) or if it is not connected now (409: a pinned job
could only wait for it, holding the client's credit). Once queued, a pinned job is handed to its miner alone
(`JobLifecycleStore.queued`); if the miner is lost while the job waits, the reaper fails the job `no_miner`
(`Reaper.run_once`), and if it registers again without what the job needs, so does the registration.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from aitbc.domain.accounts import Miner
from aitbc.domain.errors import Conflict, InvalidInput, NotFound
from aitbc.domain.identifiers import looks_like_id
from aitbc.domain.job import FailureReason, Job, JobSpec
from aitbc.domain.matching import unmet_requirements
from aitbc.domain.moves import Expire
from aitbc.services.lifecycle import Lifecycle
from aitbc.storage.interfaces import JobLifecycleStore

if TYPE_CHECKING:  # the registry calls back in here when a miner registers
    from aitbc.services.miner_registry import LiveMiners

FIND_MINERS = "`aitbc marketplace gpu list` shows the miners connected now"
PINNED_BATCH = 500  # pinned jobs a registration looks at


def describe(miner: Miner) -> str:
    return f"{miner.name!r} ({miner.id})" if miner.name != miner.id else miner.id


async def resolve_pin(miners: LiveMiners, reference: str, spec: JobSpec, since: datetime, now: datetime) -> Miner:
    """The connected miner `reference` (an id or a name) names, which can run `spec`; else the error that says
    why the job cannot be pinned to it."""
    miner = await _named(miners, reference, since)
    if miner.last_seen_at < since:
        idle = int((now - miner.last_seen_at).total_seconds())
        raise Conflict(
            f"miner {describe(miner)} is not connected (last heard from {idle} s ago): a job pinned to it would "
            "only wait. Start the miner, pin another one, or submit without --agent-id"
        )
    unmet = unmet_requirements(spec, miner.capabilities)
    if unmet:
        raise InvalidInput(f"miner {describe(miner)} cannot run this job: {'; '.join(unmet)}")
    return miner


async def _named(miners: LiveMiners, reference: str, since: datetime) -> Miner:
    if looks_like_id(reference, "miner"):
        found = await miners.get_miner(reference)
        if found is None:
            raise NotFound(f"no miner has the id {reference!r}: {FIND_MINERS}")
        return found
    live = [miner for miner in miners.live(since) if miner.name == reference]
    if len(live) > 1:
        raise InvalidInput(
            f"{len(live)} connected miners are named {reference!r}: pass the id of the one you mean ({FIND_MINERS})"
        )
    if live:
        return live[0]
    known = await miners.miners_named(reference)
    if not known:
        raise NotFound(f"no miner is named {reference!r}: {FIND_MINERS}")
    return max(known, key=lambda miner: miner.last_seen_at)  # all gone: the latest says how long ago


def pinned_waiting_for(job: Job, live: list[Miner]) -> str:
    """What a pending pinned job waits for: its own miner (from the in-memory view of live miners)."""
    pinned = job.spec.requirements.miner_id
    miner = next((miner for miner in live if miner.id == pinned), None)
    if miner is None:
        return f"its miner {pinned} is not connected: the job fails (no_miner) unless the miner comes back"
    unmet = unmet_requirements(job.spec, miner.capabilities)
    if unmet:
        return f"its miner {describe(miner)} can no longer run it: {'; '.join(unmet)}"
    return f"waiting for its miner {describe(miner)} to be free"


async def fail_pinned_it_cannot_run(jobs: JobLifecycleStore, lifecycle: Lifecycle, miner: Miner, now: datetime) -> None:
    """A miner that registers again without a runtime, model or GPU its pinned jobs need would leave them
    waiting for nothing: they fail `no_miner` now (one query on the pinned-jobs index, usually empty)."""
    for job in await jobs.pinned_pending(miner.id, PINNED_BATCH):
        unmet = unmet_requirements(job.spec, miner.capabilities)
        if unmet:
            error = f"its miner {describe(miner)} registered again and cannot run it: {'; '.join(unmet)}"
            await lifecycle.move(job, Expire(completed_at=now, failure_reason=FailureReason.NO_MINER, error=error), now)
