"""Builds the coordinator from settings: the one place that picks concrete backends."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from aitbc.blobs.local import LocalBlobStore
from aitbc.domain.clock import Clock, SystemClock
from aitbc.services.accounts import AccountService
from aitbc.services.dispatch import DispatchService
from aitbc.services.events import EventService
from aitbc.services.jobs import JobService
from aitbc.services.reaper import Reaper
from aitbc.settings import Settings
from aitbc.storage.sql.accounts import SqlAccountStore
from aitbc.storage.sql.database import Database, migrate, open_database
from aitbc.storage.sql.jobs import SqlJobStore
from aitbc.storage.sql.miners import SqlMinerStore
from aitbc.streaming.hub import EventHub


@dataclass
class Coordinator:
    settings: Settings
    clock: Clock
    database: Database
    job_store: SqlJobStore
    hub: EventHub
    accounts: AccountService
    jobs: JobService
    dispatch: DispatchService
    events: EventService
    reaper: Reaper
    blobs: LocalBlobStore

    async def close(self) -> None:
        await self.database.dispose()


async def open_coordinator(settings: Settings, clock: Clock | None = None) -> Coordinator:
    """Migrate the database to the newest schema and build every service over it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    await anyio.to_thread.run_sync(migrate, url)
    clock = clock or SystemClock()
    database = open_database(url)
    job_store = SqlJobStore(database)
    miner_store = SqlMinerStore(database)
    blobs = LocalBlobStore(settings.blob_dir)
    hub = EventHub()
    jobs = JobService(job_store, miner_store, blobs, hub, clock, settings)
    return Coordinator(
        settings=settings,
        clock=clock,
        database=database,
        job_store=job_store,
        hub=hub,
        accounts=AccountService(SqlAccountStore(database), clock),
        jobs=jobs,
        dispatch=DispatchService(job_store, miner_store, blobs, hub, clock, settings),
        events=EventService(job_store, hub),
        reaper=Reaper(job_store, jobs, hub, clock, settings),
        blobs=blobs,
    )
