"""The store contract: what services rely on from each store interface (`aitbc.storage.interfaces`,
`storage.results`, `storage.uploads`), checked through those interfaces on SQLite and on PostgreSQL.

One database per backend serves the whole package (a PostgreSQL database costs a second or more to create and
drop here); each test starts from empty tables instead. The concrete stores are named only in `stores`."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from aitbc.domain.accounts import Account
from aitbc.domain.identifiers import new_job_id
from aitbc.domain.job import FailureReason, Job, JobSpec, JobStatus
from aitbc.domain.moves import (
    CancelPending,
    Claim,
    Complete,
    ConfirmCancel,
    Expire,
    Fail,
    ForceCancel,
    MinerReport,
    RequestCancel,
    Requeue,
    Start,
    WriteSet,
)
from aitbc.domain.package import ResultsState
from aitbc.domain.plans import Plan
from aitbc.domain.transitions import Move
from aitbc.storage.interfaces import (
    AccountStore,
    JobStore,
    LedgerStore,
    MarketStore,
    MinerStore,
    NewJob,
    ResultFile,
    SpendingStore,
    StatsStore,
    StoredResult,
)
from aitbc.storage.results import ResultStore, ShareStore
from aitbc.storage.sql.accounts import SqlAccountStore
from aitbc.storage.sql.database import migrate, open_database, sync_engine
from aitbc.storage.sql.jobs import SqlJobStore
from aitbc.storage.sql.ledger import SqlLedgerStore
from aitbc.storage.sql.market import SqlMarketStore
from aitbc.storage.sql.miners import SqlMinerStore
from aitbc.storage.sql.results import SqlResultStore, SqlShareStore
from aitbc.storage.sql.spending import SqlSpendingStore
from aitbc.storage.sql.stats import SqlStatsStore
from aitbc.storage.sql.tables import metadata
from aitbc.storage.sql.uploads import SqlUploadStore
from aitbc.storage.uploads import UploadStore
from tests.conftest import POSTGRES_ADMIN_URL

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A moment `seconds` after the suite's fixed start: stores take `now` from their caller, never a clock."""
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Backend:
    url: str
    engine: Engine

    def clear(self) -> None:
        """Empty every table (DELETE: for a few rows far cheaper than PostgreSQL's TRUNCATE)."""
        with self.engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                connection.execute(table.delete())


@pytest.fixture(scope="package", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store-contract') / 'aitbc.db'}"
        migrate(url)
        engine = sync_engine(url)
        yield Backend(url, engine)
        engine.dispose()
        return
    template_url: str = request.getfixturevalue("postgres_template")
    template = template_url.rsplit("/", 1)[1]
    name = f"aitbc_contract_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name} TEMPLATE {template}"))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("+psycopg", "") + f"/{name}"
    engine = sync_engine(url)
    yield Backend(url, engine)
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@dataclass(frozen=True)
class Stores:
    """Every store a service can be given, typed as the interface it is given as."""

    jobs: JobStore
    stats: StatsStore
    ledger: LedgerStore
    accounts: AccountStore
    miners: MinerStore
    results: ResultStore
    shares: ShareStore
    uploads: UploadStore
    market: MarketStore
    spending: SpendingStore

    async def account(self, name: str, plan: Plan | None = None) -> Account:
        return (await self.accounts.ensure_account(name, plan, T0))[0]

    async def submit(self, account: Account, **overrides: Any) -> Job:
        job, event = await self.jobs.insert_job(job_row(account, **overrides), overrides.get("created_at", T0))
        assert event is not None
        return job

    async def move(self, job: Job, write: WriteSet | Move, lease_id: str | None = None) -> Job:
        """Apply a move that must succeed (a test's set-up, not what it checks); a bare `Move` gets the
        write-set `write_for` gives it."""
        write = write_for(write, job) if isinstance(write, Move) else write
        changed = await self.jobs.transition(job.id, write, at(1), lease_id=lease_id)
        assert changed is not None, (job.status, write)
        return changed.job

    async def claim(self, job: Job, lease_id: str = "lease_1", miner_id: str = "miner_1", until: float = 60) -> Job:
        claim = Claim(miner_id=miner_id, lease_id=lease_id, lease_expires_at=at(until), assigned_at=at(1))
        changed = await self.jobs.transition(job.id, claim, at(1))
        assert changed is not None, job.status
        return changed.job

    async def in_status(self, account: Account, status: JobStatus, lease_id: str = "lease_1") -> Job:
        """A job brought to `status` through the moves of the transition table."""
        job = await self.submit(account)
        if status is JobStatus.PENDING:
            return job
        if status is JobStatus.CANCELED:
            return await self.move(job, Move.CANCEL_PENDING)
        job = await self.claim(job, lease_id)
        after_claim = {
            JobStatus.ASSIGNED: None,
            JobStatus.RUNNING: Move.START,
            JobStatus.CANCELING: Move.REQUEST_CANCEL,
            JobStatus.COMPLETED: Move.COMPLETE,
            JobStatus.FAILED: Move.FAIL,
        }[status]
        return job if after_claim is None else await self.move(job, after_claim, lease_id)

    async def with_results(self, account: Account, paths: tuple[str, ...] = ("result.txt",), when: float = 10) -> Job:
        """A completed job whose results are available, its files recorded under lease_1."""
        job = await self.claim(await self.submit(account))
        for path in paths:
            recorded = await self.uploads.record_result_file(result_file(job.id, "lease_1", path), at(2), 10**9)
            assert recorded.stored
        result = stored_result(job.id, "lease_1", paths, when)
        done = Complete(at(when), MinerReport("lease_1", ResultsState.AVAILABLE))
        changed = await self.jobs.transition(job.id, done, at(when), lease_id="lease_1", result=result)
        assert changed is not None
        return changed.job


def write_for(move: Move, job: Job, when: float = 1) -> WriteSet:
    """A plain write-set of `move` for `job`, for tests about a move's guard rather than what it writes: it keeps
    the job's lease and its expiry (a claim: `lease_1` until 60 s)."""
    lease_id = job.lease_id or "lease_1"
    expires = job.lease_expires_at or at(60)
    report = MinerReport(lease_id, ResultsState.NONE)
    return {
        Move.CLAIM: Claim("miner_1", lease_id, expires, at(when)),
        Move.START: Start(at(when), expires),
        Move.COMPLETE: Complete(at(when), report),
        Move.FAIL: Fail(at(when), FailureReason.RUNTIME_ERROR, "exit 1", report),
        Move.REQUEUE: Requeue("the test sent it back"),
        Move.EXPIRE: Expire(at(when), FailureReason.EXPIRED, "nobody took it"),
        Move.CANCEL_PENDING: CancelPending(at(when)),
        Move.REQUEST_CANCEL: RequestCancel(at(when), expires),
        Move.CONFIRM_CANCEL: ConfirmCancel(at(when), report),
        Move.FORCE_CANCEL: ForceCancel(at(when), "the miner did not confirm"),
    }[move]


def job_row(account: Account, **overrides: Any) -> NewJob:
    """A pending job, as the job service builds it at submit (`overrides`: any field of `NewJob` or `JobSpec`)."""
    created = overrides.get("created_at", T0)
    new = NewJob(
        id=new_job_id(),
        account_id=account.id,
        spec=JobSpec(type="command", model=None, input="echo hi"),
        max_attempts=3,
        created_at=created,
        queue_expires_at=created + timedelta(hours=1),
        request_hash="a" * 64,
    )
    spec_fields = {key: overrides.pop(key) for key in list(overrides) if key in JobSpec.__dataclass_fields__}
    return replace(new, spec=replace(new.spec, **spec_fields), **overrides)


def result_file(job_id: str, lease_id: str, path: str, size: int = 10, blob: str | None = None) -> ResultFile:
    return ResultFile(job_id, lease_id, path, size, "b" * 64, blob or f"results/{job_id}/{lease_id}/{path}")


def stored_result(job_id: str, lease_id: str, paths: tuple[str, ...], when: float = 10) -> StoredResult:
    return StoredResult(
        job_id=job_id,
        lease_id=lease_id,
        miner_id="miner_1",
        manifest={"files": [{"path": path} for path in paths]},
        manifest_sha256="c" * 64,
        miner_signature="signature",
        partial=False,
        created_at=at(when),
        miner_public_key="key",
        usage={"cpu_seconds": 1.5},
    )


@pytest.fixture
async def stores(backend: Backend) -> AsyncIterator[Stores]:
    backend.clear()
    database = open_database(backend.url)
    yield Stores(
        jobs=SqlJobStore(database),
        stats=SqlStatsStore(database),
        ledger=SqlLedgerStore(database),
        accounts=SqlAccountStore(database),
        miners=SqlMinerStore(database),
        results=SqlResultStore(database),
        shares=SqlShareStore(database),
        uploads=SqlUploadStore(database),
        market=SqlMarketStore(database),
        spending=SqlSpendingStore(database),
    )
    await database.dispose()


@pytest.fixture
async def alice(stores: Stores) -> Account:
    return await stores.account("alice")
