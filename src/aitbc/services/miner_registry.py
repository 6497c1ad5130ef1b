"""Miners: registering under a name and key, and the heartbeat that keeps their leases alive.

The heartbeat is also how a cancel reaches a miner at once: held open, it answers as soon as one of the
miner's jobs is being cancelled.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import Conflict
from aitbc.domain.identifiers import new_miner_id
from aitbc.domain.job import Job, JobStatus
from aitbc.domain.manifest import load_public_key
from aitbc.domain.matching import Capabilities, Gpu
from aitbc.protocol.miners import LeaseState, RegisterRequest, RegisterResponse
from aitbc.services.leases import HELD_STATUSES, LeaseGuard
from aitbc.settings import Settings
from aitbc.storage.interfaces import JobStore, MinerStore
from aitbc.streaming.hub import EventHub


class MinerRegistry:
    def __init__(
        self, jobs: JobStore, miners: MinerStore, guard: LeaseGuard, hub: EventHub, clock: Clock, settings: Settings
    ) -> None:
        self._jobs = jobs
        self._miners = miners
        self._guard = guard
        self._hub = hub
        self._clock = clock
        self._settings = settings

    async def register(self, principal: Principal, request: RegisterRequest) -> RegisterResponse:
        """Register, or re-register under the same name (same id). A name is one miner: while a miner of that
        name is active with another key, a second one is refused, or its signatures would not verify."""
        load_public_key(request.public_key)
        now = self._clock.now()
        existing = await self._miners.get_miner_by_name(principal.account.id, request.name)
        if existing is not None and existing.public_key != request.public_key:
            idle = (now - existing.last_seen_at).total_seconds()
            if idle < self._settings.miner_active_seconds:
                raise Conflict(
                    f"a miner named {request.name!r} is already running with another key (heard from {idle:.0f} s "
                    "ago): give this one another --name, or stop the other and retry in "
                    f"{self._settings.miner_active_seconds - idle:.0f} s"
                )
        capabilities = Capabilities(
            runtimes=frozenset(request.runtimes),
            models=frozenset(request.models),
            gpus=tuple(Gpu(model=g.model, vram_gb=g.vram_gb) for g in request.gpus),
        )
        miner = await self._miners.register(
            new_miner_id(),
            principal.account.id,
            request.name,
            capabilities,
            request.max_concurrency,
            request.public_key,
            now,
        )
        await self._hub.work_available()
        return RegisterResponse(
            miner_id=miner.id,
            lease_seconds=self._settings.lease_seconds,
            heartbeat_seconds=max(1, self._settings.lease_seconds // 4),
        )

    async def heartbeat(
        self, principal: Principal, miner_id: str, lease_ids: list[str], wait_seconds: float = 0
    ) -> list[LeaseState]:
        """Keep the miner's leases alive; with `wait_seconds`, hold the answer until one of its jobs is
        being cancelled (that is how a cancel reaches a miner at once)."""
        miner = await self._guard.miner(principal, miner_id)
        wakeup = self._hub.miner_wakeup(miner.id)
        deadline = time.monotonic() + min(wait_seconds, self._settings.max_claim_wait_seconds)
        while True:
            wakeup.clear()
            now = self._clock.now()
            await self._miners.touch(miner.id, now)
            held = await self._jobs.extend_leases(
                miner.id, lease_ids, now + timedelta(seconds=self._settings.lease_seconds)
            )
            states = [_lease_state(job_id, lease_id, held) for job_id, lease_id in _pairs(lease_ids, held)]
            remaining = deadline - time.monotonic()
            if any(s.cancel for s in states) or remaining <= 0 or self._hub.stopping:
                return states
            try:
                await asyncio.wait_for(wakeup.wait(), timeout=remaining)
            except TimeoutError:
                return states


def _pairs(lease_ids: list[str], held: list[Job]) -> list[tuple[str, str]]:
    by_lease = {job.lease_id: job.id for job in held}
    return [(by_lease.get(lease_id, ""), lease_id) for lease_id in lease_ids]


def _lease_state(job_id: str, lease_id: str, held: list[Job]) -> LeaseState:
    job = next((j for j in held if j.lease_id == lease_id), None)
    if job is None:
        return LeaseState(
            job_id=job_id,
            lease_id=lease_id,
            status=JobStatus.CANCELED,
            active=False,
            cancel=True,
            lease_expires_at=None,
        )
    active = job.status in HELD_STATUSES
    return LeaseState(
        job_id=job.id,
        lease_id=lease_id,
        status=job.status,
        active=active,
        cancel=job.status is JobStatus.CANCELING or not active,
        lease_expires_at=job.lease_expires_at,
    )
