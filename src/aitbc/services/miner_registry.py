"""Miners: registering under a name and key, the heartbeat that keeps their leases alive, and the
coordinator's in-memory view of the miners that are live (`LiveMiners`).

The heartbeat is also how a cancel reaches a miner at once: held open, it answers as soon as one of the
miner's jobs is being cancelled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from aitbc.domain.accounts import Miner, Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import Conflict
from aitbc.domain.identifiers import new_miner_id
from aitbc.domain.job import Job, JobStatus
from aitbc.domain.manifest import load_public_key
from aitbc.domain.matching import Capabilities, Gpu
from aitbc.domain.runtime_schemas import schemas_from_json, schemas_to_json
from aitbc.protocol.miners import LeaseState, RegisterRequest, RegisterResponse
from aitbc.services.leases import HELD_STATUSES, LeaseGuard
from aitbc.services.lifecycle import Lifecycle
from aitbc.services.pinning import fail_pinned_it_cannot_run
from aitbc.settings import Settings
from aitbc.storage.interfaces import JobLifecycleStore, MinerStore
from aitbc.streaming.hub import EventHub

log = logging.getLogger(__name__)
# How often a miner's liveness is told to the other replicas while it keeps polling (at most; a third of the
# lost window when that is shorter): a replica's reaper must not take a miner that polls another replica for lost.
RELAY_EVERY_SECONDS = 5.0
# How often a polling miner's `last_seen_at` is written to the database (at most; a third of the lost window when
# that is shorter). Every claim and heartbeat updates the in-memory view; the row only has to be right to within
# this for a restart's reload, the reaper's query of lost miners (which each replica checks against its view), the
# register check of a name in use and the admin listing. A write per poll cost a transaction (and, on SQLite, a
# place in the one writer's queue) on every claim.
STORE_EVERY_SECONDS = 5.0
# A relayed record larger than this (a miner's schemas, or a long list of models) would not fit in a NOTIFY
# (8000 bytes with its envelope): it travels by reference instead, and each replica reads the miner once.
RELAY_RECORD_MAX_BYTES = 7000


class LiveMiners:
    """The miner store, plus an in-memory view of who was heard from when, so that a status GET can say what a
    pending job waits for (`waiting_for`) without a query.

    Every register and every touch (heartbeat, claim) goes through this wrapper, which records the miner and
    the moment; `live(since)` answers from memory and forgets miners not heard from since (the expiry is the
    lost window, `miner_lost_after_seconds`, as for the reaper's query of lost miners). It is loaded once at start
    (`open_coordinator`: miners heard from before a restart or by other replicas); a miner this replica did
    not know is read once, on its first touch.

    Other replicas (PostgreSQL): relayed, not polled. A register, and a touch at most every
    `RELAY_EVERY_SECONDS` per miner, send the miner's record over the relay (LISTEN/NOTIFY), and each replica
    merges what it hears into its view with no query. A registration reaches the others at once; a miner that
    keeps polling one replica stays live on all of them (their `last_seen_at` lags by at most a third of the lost
    window, as the database's does); after a relay reconnect the view is read again.
    `waiting_for` is a hint about the fleet, not part of a job's state: the job fields of a status are always
    read fresh.
    """

    def __init__(self, store: MinerStore, hub: EventHub, lost_after_seconds: float = 15) -> None:
        self._store = store
        self._hub = hub
        # A live miner heartbeats at least three times per lost window; what others hear of it lags by at most a
        # third more, so a live miner always looks heard from within two thirds of the window, plus a round trip.
        self._relay_every = min(RELAY_EVERY_SECONDS, lost_after_seconds / 3)
        self._store_every = min(STORE_EVERY_SECONDS, lost_after_seconds / 3)
        self._seen: dict[str, Miner] = {}
        self._relayed: dict[str, datetime] = {}
        self._stored: dict[str, datetime] = {}
        self._since: Callable[[], datetime] | None = None
        self._reloads: set[asyncio.Task[None]] = set()
        hub.on_miner_seen(self._heard_elsewhere)
        hub.on_notices_missed(self._reload_soon)

    def _remember(self, miner: Miner) -> None:
        known = self._seen.get(miner.id)
        if known is not None and known.last_seen_at > miner.last_seen_at:
            miner = replace(miner, last_seen_at=known.last_seen_at)
        self._seen[miner.id] = miner

    def _relay(self, miner: Miner, force: bool) -> None:
        last = self._relayed.get(miner.id)
        if not force and last is not None and (miner.last_seen_at - last).total_seconds() < self._relay_every:
            return
        self._relayed[miner.id] = miner.last_seen_at
        self._hub.miner_seen(relay_record(miner))

    def _heard_elsewhere(self, record: Mapping[str, Any]) -> None:
        try:
            if record.get("by_reference"):
                moment = datetime.fromisoformat(str(record["last_seen_at"]))
                self._read_soon(str(record["id"]), str(record["digest"]), moment)
                return
            miner = _miner(record)
        except (KeyError, TypeError, ValueError):
            log.warning("ignored a malformed live-miner notice")
            return
        self._remember(miner)  # its capabilities (a re-registration elsewhere), the later last_seen_at

    def _read_soon(self, miner_id: str, digest: str, last_seen_at: datetime) -> None:
        """A miner relayed by reference: one this view knows as it is (the same digest) only moves its
        `last_seen_at`; a new one, or one registered again, is read from the database once."""
        known = self._seen.get(miner_id)
        if known is not None and _digest(known) == digest:
            self._remember(replace(known, last_seen_at=max(known.last_seen_at, last_seen_at)))
            return
        task = asyncio.get_running_loop().create_task(self._read(miner_id, last_seen_at))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _read(self, miner_id: str, last_seen_at: datetime) -> None:
        miner = await self._store.get_miner(miner_id)
        if miner is not None:
            self._remember(replace(miner, last_seen_at=max(miner.last_seen_at, last_seen_at)))

    def _reload_soon(self) -> None:
        if self._since is None:
            return
        task = asyncio.get_running_loop().create_task(self.load(self._since()))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def live(self, since: datetime) -> list[Miner]:
        """The miners heard from at or after `since` (from memory; the rest are forgotten)."""
        for gone in [id_ for id_, miner in self._seen.items() if miner.last_seen_at < since]:
            del self._seen[gone]
            self._relayed.pop(gone, None)
            self._stored.pop(gone, None)
        return list(self._seen.values())

    def heard_since(self, miner_id: str, since: datetime) -> bool:
        """Whether this replica heard of the miner at or after `since` (itself or by a relay), which the
        database's `last_seen_at`, written less often, may not show yet."""
        known = self._seen.get(miner_id)
        return known is not None and known.last_seen_at >= since

    async def load(self, since: datetime) -> None:
        """Merge in the miners the database heard from since `since` (those of other replicas included)."""
        for miner in await self._store.seen_since(since):
            self._remember(miner)

    async def start(self, since: Callable[[], datetime]) -> None:
        """Load the view; `since` (the start of the live window) is also what a reload after a relay
        reconnect uses."""
        self._since = since
        await self.load(since())

    async def register(
        self,
        miner_id: str,
        account_id: str,
        name: str,
        capabilities: Capabilities,
        max_concurrency: int,
        public_key: str,
        now: datetime,
        region: str | None = None,
    ) -> Miner:
        miner = await self._store.register(
            miner_id, account_id, name, capabilities, max_concurrency, public_key, now, region
        )
        self._seen[miner.id] = miner  # capabilities may have changed: the new row wins whole
        self._relay(miner, force=True)
        return miner

    async def get_miner(self, miner_id: str) -> Miner | None:
        """From the view when the miner is live in it (a claim, a heartbeat and a finish each look their miner
        up), else from the database."""
        known = self._seen.get(miner_id)
        return known if known is not None else await self._store.get_miner(miner_id)

    async def get_miner_by_name(self, account_id: str, name: str) -> Miner | None:
        return await self._store.get_miner_by_name(account_id, name)

    async def miners_named(self, name: str) -> list[Miner]:
        return await self._store.miners_named(name)

    async def touch(self, miner_id: str, now: datetime) -> None:
        """The miner was heard from: at once in the view, in the database at most every `STORE_EVERY_SECONDS`
        (or a third of the lost window)."""
        stored = self._stored.get(miner_id)
        if stored is None or not 0 <= (now - stored).total_seconds() < self._store_every:
            await self._store.touch(miner_id, now)
            self._stored[miner_id] = now
        known = self._seen.get(miner_id)
        if known is None:
            known = await self._store.get_miner(miner_id)
            if known is None:
                return
        self._remember(replace(known, last_seen_at=max(now, known.last_seen_at)))
        self._relay(self._seen[miner_id], force=False)

    async def seen_since(self, moment: datetime) -> list[Miner]:
        return await self._store.seen_since(moment)


def relay_record(miner: Miner) -> dict[str, Any]:
    """What the relay carries of a miner: its whole record, or, when that is too large for a notice, its id and
    moment (`by_reference`: the other replicas read it from the database)."""
    record = _record(miner)
    if len(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()) <= RELAY_RECORD_MAX_BYTES:
        return record
    return {
        "by_reference": True,
        "id": miner.id,
        "digest": _digest(miner),
        "last_seen_at": miner.last_seen_at.isoformat(),
    }


def _digest(miner: Miner) -> str:
    """What a miner registered (all of its record but `last_seen_at`), hashed: equal when nothing changed."""
    record = _record(miner)
    del record["last_seen_at"]
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _record(miner: Miner) -> dict[str, Any]:
    """A miner as JSON, for the relay."""
    capabilities = miner.capabilities
    return {
        "id": miner.id,
        "account_id": miner.account_id,
        "name": miner.name,
        "runtimes": sorted(capabilities.runtimes),
        "models": sorted(capabilities.models),
        "gpus": [{"model": gpu.model, "vram_gb": gpu.vram_gb} for gpu in capabilities.gpus],
        "max_concurrency": miner.max_concurrency,
        "public_key": miner.public_key,
        "registered_at": miner.registered_at.isoformat(),
        "last_seen_at": miner.last_seen_at.isoformat(),
        "region": miner.region,
        "schemas": schemas_to_json(capabilities.schemas_by_runtime()),
    }


def _miner(record: Mapping[str, Any]) -> Miner:
    return Miner(
        id=str(record["id"]),
        account_id=str(record["account_id"]),
        name=str(record["name"]),
        capabilities=Capabilities.with_schemas(
            runtimes=frozenset(str(r) for r in record["runtimes"]),
            models=frozenset(str(m) for m in record["models"]),
            gpus=tuple(Gpu(model=str(g["model"]), vram_gb=float(g["vram_gb"])) for g in record["gpus"]),
            schemas=schemas_from_json(record.get("schemas")),
        ),
        max_concurrency=int(record["max_concurrency"]),
        public_key=str(record["public_key"]),
        registered_at=datetime.fromisoformat(str(record["registered_at"])),
        last_seen_at=datetime.fromisoformat(str(record["last_seen_at"])),
        region=str(record["region"]) if record.get("region") is not None else None,
    )


class MinerRegistry:
    def __init__(
        self,
        jobs: JobLifecycleStore,
        miners: MinerStore,
        guard: LeaseGuard,
        hub: EventHub,
        clock: Clock,
        settings: Settings,
        lifecycle: Lifecycle,
    ) -> None:
        self._jobs = jobs
        self._lifecycle = lifecycle
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
        capabilities = Capabilities.with_schemas(
            runtimes=frozenset(request.runtimes),
            models=frozenset(request.models),
            gpus=tuple(Gpu(model=g.model, vram_gb=g.vram_gb) for g in request.gpus),
            schemas=request.declared_schemas(),
        )
        miner = await self._miners.register(
            new_miner_id(),
            principal.account.id,
            request.name,
            capabilities,
            request.max_concurrency,
            request.public_key,
            now,
            request.region,
        )
        await fail_pinned_it_cannot_run(self._jobs, self._lifecycle, miner, now)
        await self._hub.work_available()
        return RegisterResponse(
            miner_id=miner.id,
            lease_seconds=self._settings.lease_seconds,
            heartbeat_seconds=self._settings.heartbeat_seconds,
        )

    async def heartbeat(
        self, principal: Principal, miner_id: str, lease_ids: list[str], wait_seconds: float = 0
    ) -> list[LeaseState]:
        """Keep the miner's leases alive; with `wait_seconds`, hold the answer until one of its jobs is
        being cancelled (that is how a cancel reaches a miner at once). The hold never outlasts the heartbeat
        period, whatever the miner asks: the next heartbeat is how the coordinator knows it is still there (one
        not heard from for `miner_lost_after_seconds` is lost)."""
        miner = await self._guard.miner(principal, miner_id)
        wakeup = self._hub.miner_wakeup(miner.id)
        deadline = time.monotonic() + min(wait_seconds, self._settings.heartbeat_seconds)
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
