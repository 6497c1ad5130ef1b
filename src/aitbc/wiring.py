"""Builds the coordinator from settings: the one place that picks concrete backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from sqlalchemy.engine import make_url

from aitbc.blobs.local import LocalBlobStore
from aitbc.domain.clock import Clock, SystemClock
from aitbc.domain.events import JobEvent
from aitbc.private_files import private_folder
from aitbc.services.accounts import AccountService
from aitbc.services.billing import BillingService
from aitbc.services.blob_purge import BlobPurger
from aitbc.services.claiming import ClaimService
from aitbc.services.coordinator_key import load_or_create_key
from aitbc.services.events import EventService
from aitbc.services.finishing import FinishService
from aitbc.services.history import HistoryService
from aitbc.services.jobs import JobService
from aitbc.services.leases import LeaseGuard
from aitbc.services.lifecycle import Lifecycle
from aitbc.services.logs import LogService
from aitbc.services.miner_registry import MinerRegistry
from aitbc.services.rate_limits import RateLimiter
from aitbc.services.reaper import Reaper
from aitbc.services.receipting import ReceiptIssuer
from aitbc.services.results import ResultService
from aitbc.services.retention import RetentionSweeper
from aitbc.services.running import RunService
from aitbc.services.sharing import ShareService
from aitbc.services.uploads import UploadService
from aitbc.settings import Settings
from aitbc.storage.sql.accounts import SqlAccountStore
from aitbc.storage.sql.database import Database, migrate, open_database
from aitbc.storage.sql.jobs import SqlJobStore
from aitbc.storage.sql.ledger import SqlLedgerStore
from aitbc.storage.sql.miners import SqlMinerStore
from aitbc.storage.sql.results import SqlResultStore, SqlShareStore
from aitbc.storage.sql.uploads import SqlUploadStore
from aitbc.streaming.hub import EventHub
from aitbc.streaming.postgres_relay import PostgresRelay


@dataclass
class Coordinator:
    settings: Settings
    clock: Clock
    database: Database
    job_store: SqlJobStore
    hub: EventHub
    accounts: AccountService
    jobs: JobService
    miners: MinerRegistry
    claiming: ClaimService
    running: RunService
    finishing: FinishService
    events: EventService
    reaper: Reaper
    billing: BillingService
    ledger: SqlLedgerStore
    history: HistoryService
    rate_limiter: RateLimiter
    blobs: LocalBlobStore
    results: ResultService
    shares: ShareService
    logs: LogService
    retention: RetentionSweeper
    receipts: ReceiptIssuer
    uploads: UploadService

    relay: PostgresRelay | None = None

    async def start_relay(self) -> None:
        """On PostgreSQL, share events, claim wake-ups and cancels with the other replicas."""
        if self.database.dialect != "postgresql" or self.relay is not None:
            return
        conninfo = make_url(self.settings.resolved_database_url).set(drivername="postgresql")
        store = self.job_store

        async def fetch_event(account_id: str, seq: int) -> JobEvent | None:
            found = await store.events_since(account_id, seq - 1, None, 1)
            return found[0] if found and found[0].seq == seq else None

        self.relay = PostgresRelay(conninfo.render_as_string(hide_password=False), self.hub, fetch_event)
        await self.relay.start()

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        await self.database.dispose()


async def open_coordinator(settings: Settings, clock: Clock | None = None) -> Coordinator:
    """Migrate the database to the newest schema and build every service over it."""
    await anyio.to_thread.run_sync(private_folder, settings.data_dir)  # every tenant's data: owner-only
    url = settings.resolved_database_url
    await anyio.to_thread.run_sync(migrate, url)
    clock = clock or SystemClock()
    database = open_database(url)
    job_store = SqlJobStore(database)
    miner_store = SqlMinerStore(database)
    blobs = LocalBlobStore(settings.blob_dir)
    hub = EventHub()
    account_store = SqlAccountStore(database)
    ledger = SqlLedgerStore(database)
    billing = BillingService(ledger, account_store, miner_store, clock, settings.prices)
    lifecycle = Lifecycle(job_store, billing, hub)
    jobs = JobService(job_store, miner_store, blobs, hub, clock, settings, lifecycle, billing)
    result_store = SqlResultStore(database)
    key = await anyio.to_thread.run_sync(load_or_create_key, settings.resolved_coordinator_key_file)
    upload_store = SqlUploadStore(database)
    uploads = UploadService(upload_store, blobs, clock, settings)
    guard = LeaseGuard(job_store, miner_store)
    results = ResultService(job_store, result_store, account_store, miner_store, jobs, blobs, key, hub, clock, settings)
    return Coordinator(
        settings=settings,
        clock=clock,
        database=database,
        job_store=job_store,
        hub=hub,
        accounts=AccountService(account_store, billing, clock, settings.welcome_credit),
        billing=billing,
        ledger=ledger,
        history=HistoryService(job_store, jobs, clock),
        rate_limiter=RateLimiter(settings.plan_limits, clock),
        jobs=jobs,
        miners=MinerRegistry(job_store, miner_store, guard, hub, clock, settings),
        claiming=ClaimService(job_store, miner_store, guard, lifecycle, hub, clock, settings),
        running=RunService(job_store, guard, lifecycle, uploads, hub, clock, settings),
        finishing=FinishService(job_store, guard, lifecycle, clock),
        events=EventService(job_store, hub),
        reaper=Reaper(job_store, jobs, lifecycle, clock, settings),
        blobs=blobs,
        results=results,
        shares=ShareService(SqlShareStore(database), job_store, results, jobs, clock, settings),
        logs=LogService(job_store, jobs),
        retention=RetentionSweeper(
            result_store, results, BlobPurger(upload_store, blobs, clock, settings), clock, settings
        ),
        receipts=ReceiptIssuer(job_store, results, hub),
        uploads=uploads,
    )


@asynccontextmanager
async def coordinator_session(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Coordinator]:
    """`open_coordinator` and its `close`, whatever happens in between: `async with coordinator_session(s) as c:`."""
    coordinator = await open_coordinator(settings, clock)
    try:
        yield coordinator
    finally:
        await coordinator.close()
