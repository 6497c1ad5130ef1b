"""Builds the coordinator from settings: the one place that picks concrete backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from sqlalchemy.engine import make_url

from aitbc.blobs.interface import BlobStore
from aitbc.blobs.local import LocalBlobStore
from aitbc.coordinator_key import load_or_create_key
from aitbc.domain.clock import Clock, SystemClock
from aitbc.domain.events import JobEvent
from aitbc.private_files import private_folder
from aitbc.services.accounts import AccountService
from aitbc.services.admin_views import AccountViews
from aitbc.services.billing import BillingService
from aitbc.services.blob_purge import BlobPurger
from aitbc.services.claiming import ClaimService
from aitbc.services.deletion import ResultDeletion
from aitbc.services.downloads import DownloadService
from aitbc.services.events import EventService
from aitbc.services.finishing import FinishService
from aitbc.services.history import HistoryService
from aitbc.services.job_presenter import JobPresenter
from aitbc.services.jobs import JobService
from aitbc.services.leases import LeaseGuard
from aitbc.services.lifecycle import Lifecycle
from aitbc.services.logs import LogService
from aitbc.services.marketplace import MarketplaceService
from aitbc.services.miner_registry import LiveMiners, MinerRegistry
from aitbc.services.monitoring import MonitorService
from aitbc.services.packages import PackageService
from aitbc.services.presets import PresetResolver
from aitbc.services.rate_limits import RateLimiter
from aitbc.services.reaper import Reaper
from aitbc.services.receipts import ReceiptService
from aitbc.services.retention import Retention, RetentionSweeper
from aitbc.services.running import RunService
from aitbc.services.sharing import ShareService
from aitbc.services.spending import SpendingAlerts, SpendingService
from aitbc.services.templates import TemplateService
from aitbc.services.uploads import UploadService
from aitbc.services.waiting import JobWaiter
from aitbc.services.workflows import WorkflowService
from aitbc.settings import Settings
from aitbc.storage.interfaces import JobStore, LedgerStore
from aitbc.storage.sql.accounts import SqlAccountStore
from aitbc.storage.sql.database import Database, migrate, open_database
from aitbc.storage.sql.jobs import SqlJobStore
from aitbc.storage.sql.ledger import SqlLedgerStore
from aitbc.storage.sql.market import SqlMarketStore
from aitbc.storage.sql.miners import SqlMinerStore
from aitbc.storage.sql.monitor import SqlMonitorStore
from aitbc.storage.sql.presets import SqlTemplateStore, SqlWorkflowStore
from aitbc.storage.sql.results import SqlResultStore, SqlShareStore
from aitbc.storage.sql.spending import SqlSpendingStore
from aitbc.storage.sql.stats import SqlStatsStore
from aitbc.storage.sql.uploads import SqlUploadStore
from aitbc.streaming.hub import EventHub
from aitbc.streaming.postgres_relay import PostgresRelay


@dataclass
class Coordinator:
    settings: Settings
    clock: Clock
    database: Database
    job_store: JobStore
    hub: EventHub
    accounts: AccountService
    account_views: AccountViews
    jobs: JobService
    miners: MinerRegistry
    live_miners: LiveMiners
    claiming: ClaimService
    running: RunService
    finishing: FinishService
    job_views: JobPresenter
    events: EventService
    reaper: Reaper
    billing: BillingService
    ledger: LedgerStore
    history: HistoryService
    rate_limiter: RateLimiter
    blobs: BlobStore
    packages: PackageService
    downloads: DownloadService
    receipts: ReceiptService
    deletion: ResultDeletion
    shares: ShareService
    logs: LogService
    retention: RetentionSweeper
    uploads: UploadService
    templates: TemplateService
    workflows: WorkflowService
    marketplace: MarketplaceService
    monitor: MonitorService
    spending: SpendingService
    spending_alerts: SpendingAlerts

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
    database = open_database(url, settings.sqlite_synchronous)
    job_store: JobStore = SqlJobStore(database)  # every job noun in one store; each service is given the ones it uses
    blobs = LocalBlobStore(settings.blob_dir)
    hub = EventHub()
    miner_store = LiveMiners(SqlMinerStore(database), hub, settings.miner_lost_after_seconds)
    account_store = SqlAccountStore(database)
    ledger = SqlLedgerStore(database)
    billing = BillingService(ledger, account_store, miner_store, clock, settings.prices)
    spending_alerts = SpendingAlerts(hub)  # where a webhook sender would subscribe to spending alerts
    lifecycle = Lifecycle(job_store, billing, hub, spending_alerts)
    workflows = WorkflowService(SqlWorkflowStore(database), clock)
    templates = TemplateService(SqlTemplateStore(database), workflows, clock)
    presets = PresetResolver(templates, workflows)
    guard = LeaseGuard(job_store, miner_store)
    claiming = ClaimService(job_store, job_store, miner_store, guard, lifecycle, hub, clock, settings)
    jobs = JobService(
        job_store, job_store, job_store, miner_store, blobs, hub, clock, settings, lifecycle, billing, presets, claiming
    )
    result_store = SqlResultStore(database)
    key = await anyio.to_thread.run_sync(load_or_create_key, settings.resolved_coordinator_key_file)
    upload_store = SqlUploadStore(database)
    uploads = UploadService(upload_store, blobs, clock, settings)
    await miner_store.start(jobs.miners_since)  # those heard from before a restart, or by another replica
    accounts = AccountService(account_store, billing, clock, hub, settings.welcome_credit)
    retention = Retention(account_store, settings)
    packages = PackageService(job_store, jobs, retention, clock)
    downloads = DownloadService(packages, result_store, blobs)
    job_views = JobPresenter(jobs, retention, JobWaiter(job_store, hub), downloads)
    receipts = ReceiptService(job_store, job_store, result_store, miner_store, jobs, key, hub, clock)
    deletion = ResultDeletion(job_store, result_store, jobs, blobs, hub, clock)
    purger = BlobPurger(upload_store, blobs, clock, settings)
    return Coordinator(
        settings=settings,
        clock=clock,
        database=database,
        job_store=job_store,
        hub=hub,
        accounts=accounts,
        account_views=AccountViews(accounts, billing),
        billing=billing,
        ledger=ledger,
        history=HistoryService(job_store, job_store, SqlStatsStore(database), jobs, job_views, clock),
        rate_limiter=RateLimiter(settings.plan_limits, clock),
        jobs=jobs,
        job_views=job_views,
        miners=MinerRegistry(job_store, miner_store, guard, hub, clock, settings, lifecycle),
        live_miners=miner_store,
        claiming=claiming,
        running=RunService(job_store, job_store, job_store, guard, lifecycle, uploads, hub, clock, settings),
        finishing=FinishService(job_store, job_store, guard, lifecycle, clock),
        events=EventService(job_store, hub),
        reaper=Reaper(job_store, jobs, lifecycle, clock, settings, miner_store),
        blobs=blobs,
        packages=packages,
        downloads=downloads,
        receipts=receipts,
        deletion=deletion,
        shares=ShareService(SqlShareStore(database), job_store, packages, downloads, jobs, clock, settings),
        logs=LogService(job_store, jobs),
        retention=RetentionSweeper(result_store, retention, deletion, receipts, purger, clock, settings),
        uploads=uploads,
        templates=templates,
        workflows=workflows,
        marketplace=MarketplaceService(SqlMarketStore(database), miner_store, jobs, settings.prices),
        monitor=MonitorService(job_store, SqlMonitorStore(database), miner_store, jobs, clock),
        spending=SpendingService(SqlSpendingStore(database), clock),
        spending_alerts=spending_alerts,
    )


@asynccontextmanager
async def coordinator_session(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Coordinator]:
    """`open_coordinator` and its `close`, whatever happens in between: `async with coordinator_session(s) as c:`."""
    coordinator = await open_coordinator(settings, clock)
    try:
        yield coordinator
    finally:
        await coordinator.close()
