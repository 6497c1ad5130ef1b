"""The store interfaces services program against; ``storage.sql`` implements them for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aitbc.domain.accounts import Account, ApiKey, Miner
from aitbc.domain.events import JobEvent
from aitbc.domain.job import Job, JobSpec, JobStatus
from aitbc.domain.matching import Capabilities
from aitbc.domain.moves import Billed, WriteSet
from aitbc.domain.plans import Plan, Role
from aitbc.domain.presets import JobTemplate, Workflow
from aitbc.domain.spending import Spending, SpendingAlert
from aitbc.domain.transitions import Move


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    total: int
    next_cursor: str | None
    plans: dict[str, Plan] = field(default_factory=dict)  # the plan of each account on the page, read with it


@dataclass(frozen=True)
class JobFilter:
    account_id: str | None = None
    statuses: Sequence[JobStatus] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    tag: str | None = None  # jobs that have this tag
    name: str | None = None  # jobs of exactly this name

    @property
    def labeled(self) -> bool:
        """Whether it filters on a tag or a name (the maintained counts cannot say how many match)."""
        return self.tag is not None or self.name is not None


@dataclass(frozen=True)
class JobStats:
    by_status: dict[str, int]
    average_run_seconds: float | None
    spent_units: int


@dataclass(frozen=True)
class StoredFile:
    id: str
    account_id: str
    name: str
    size: int
    sha256: str
    blob_key: str
    created_at: datetime


@dataclass(frozen=True)
class ResultFile:
    job_id: str
    lease_id: str
    path: str
    size: int
    sha256: str
    blob_key: str
    crc32: int | None = None  # computed while the blob was written; None for files recorded before that


@dataclass(frozen=True)
class StoredResult:
    job_id: str
    lease_id: str
    miner_id: str
    manifest: dict[str, Any]
    manifest_sha256: str
    miner_signature: str
    partial: bool
    created_at: datetime
    miner_public_key: str = ""
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None  # how the job's time went, as the miner reported it


@dataclass(frozen=True)
class LedgerEntry:
    """One movement of money; amounts in whole nano-AITBC, positive into the account, negative out."""

    account_id: str
    kind: str  # grant, hold, release, payout, fee
    amount_units: int
    job_id: str | None = None
    memo: str = ""
    # A release's charge: the part of the job's hold that does not come back. Not a row of its own (the hold and
    # the release already move the balance); it ends the hold with the release and counts toward the month.
    charged_units: int = 0


@dataclass(frozen=True)
class StoredLedgerEntry:
    id: int
    account_id: str
    kind: str
    amount_units: int
    job_id: str | None
    memo: str
    created_at: datetime


@dataclass(frozen=True)
class Changed:
    """A job after a successful guarded update, with the event that records it, and the account events its
    settlement set off (a spending alert it crossed), stored in the same transaction."""

    job: Job
    event: JobEvent
    alerts: tuple[JobEvent, ...] = ()


@dataclass(frozen=True)
class GuardedMove:
    """One move of the transition table to apply as a compare-and-set, with what goes with it (see
    `JobLifecycleStore.transition`); several of them can share one transaction (`transitions`). The move is
    the write-set's own: `write` cannot name another."""

    job_id: str
    write: WriteSet
    lease_id: str | None = None
    event_data: Mapping[str, Any] | None = None
    result: StoredResult | None = None
    lease_expired_by: datetime | None = None
    ledger: Sequence[LedgerEntry] = ()
    billed: Billed | None = None

    @property
    def move(self) -> Move:
        return self.write.move


@dataclass(frozen=True)
class NewJob:
    """A job to insert, as a submit decided it: it starts pending at 0 % with no attempt and no results, and
    holds `hold_units` of the account's balance until it ends."""

    id: str
    account_id: str
    spec: JobSpec
    max_attempts: int
    created_at: datetime
    queue_expires_at: datetime
    request_hash: str | None  # what an idempotency key's replay is compared with: kept only with a key
    idempotency_key: str | None = None
    retry_of: str | None = None
    max_cost_units: int = 0
    estimated_cost_units: int = 0
    estimated_time_seconds: int = 0
    hold_units: int = 0


class JobLifecycleStore(Protocol):
    """Jobs as they move: inserted at submit, moved through the transition table, leased to miners, and the
    queries that find the jobs a claim or the reaper acts on."""

    async def insert_job(
        self, new: NewJob, now: datetime, max_active: int | None = None
    ) -> tuple[Job, JobEvent | None]:
        """Insert a job, its first event and its hold on the account's balance, in one transaction; if its
        idempotency key was used already, return that job and no event. Raise PaymentRequired if the balance
        cannot cover the hold and RateLimited if the account already has `max_active` unfinished jobs —
        storing nothing."""

    async def insert_job_and_move(
        self, new: NewJob, now: datetime, max_active: int | None = None, then: Sequence[GuardedMove] = ()
    ) -> tuple[Job, JobEvent | None, list[Changed | None]]:
        """`insert_job`, and in the same transaction the moves `then` of the new job (a waiting miner's claim
        and start: its job is leased with the commit that stores it), each guarded as `transitions` guards it;
        an answer per move (None: its guard failed, or the key was a replay and nothing was inserted)."""

    async def insert_jobs(
        self, new: Sequence[NewJob], now: datetime, max_active: int | None = None
    ) -> list[tuple[Job, JobEvent | None]]:
        """A batch of one account's jobs, as `insert_job` inserts one, in one transaction: an answer per job,
        in order (a replayed key: the job it made, and no event). If one job does not fit (the balance, the
        cap, a key used for a different request) nothing is stored and the error's `item` names it."""

    async def request_hash(self, job_id: str) -> str | None:
        """The hash of the submit request that created the job (to spot a reused idempotency key)."""

    async def transition(
        self,
        job_id: str,
        write: WriteSet,
        now: datetime,
        *,
        lease_id: str | None = None,
        event_data: Mapping[str, Any] | None = None,
        result: StoredResult | None = None,
        lease_expired_by: datetime | None = None,
        ledger: Sequence[LedgerEntry] = (),
        billed: Billed | None = None,
    ) -> Changed | None:
        """Apply the move of `write` as a compare-and-set, writing its fields (and `billed`, for a move that
        ends the job), with its event (and the job's result record, when given) in the same transaction; None
        if the job was not in a source status (or, for moves that need it, not under `lease_id`, or, with
        `lease_expired_by`, its lease was extended)."""

    async def transitions(self, moves: Sequence[GuardedMove], now: datetime) -> list[Changed | None]:
        """Apply several moves, in order, in one transaction: each is its own compare-and-set exactly as
        `transition` applies it (a move whose guard does not hold is None and changes nothing; the others still
        apply). Two moves of one job (claim, then start) see each other. An answer per move, in order."""

    async def queued(self, types: Sequence[str], limit: int, miner_id: str = "") -> list[Job]:
        """Pending jobs of these types that `miner_id` may take (not pinned to another miner), highest priority
        first, then oldest."""

    async def pinned_to_lost_miners(self, since: datetime, limit: int) -> list[Job]:
        """Pending jobs pinned to a miner not heard from since `since` (or not registered at all)."""

    async def pinned_pending(self, miner_id: str, limit: int) -> list[Job]:
        """Pending jobs pinned to this miner."""

    async def held_by_lost_miners(self, since: datetime, limit: int) -> list[Job]:
        """Assigned, running and canceling jobs whose miner's `last_seen_at` is before `since`, the miners
        silent longest first."""

    async def record_progress(
        self,
        job_id: str,
        miner_id: str,
        lease_id: str,
        now: datetime,
        progress: int | None,
        message: str | None,
        estimated_completion: datetime | None,
        lease_expires_at: datetime,
    ) -> tuple[Job, JobEvent | None] | None:
        """Update progress under this miner's live lease and extend it; a canceling job is returned unchanged."""

    async def extend_leases(self, miner_id: str, lease_ids: Sequence[str], expires_at: datetime) -> list[Job]:
        """Extend the given leases of this miner; return every job those leases still hold."""

    async def renew_running_leases(self, until: datetime) -> int:
        """Give every assigned or running job's lease until `until` at least; return how many moved."""

    async def expired(self, status: JobStatus, now: datetime, limit: int) -> list[Job]:
        """Jobs in `status` whose deadline passed: lease expiry for leased/canceling, queue TTL for pending."""


class JobEventLog(Protocol):
    """Each account's numbered events of its jobs (status moves, progress, logs, results), for followers."""

    async def append_event(self, job: Job, kind: str, now: datetime, data: Mapping[str, Any]) -> JobEvent: ...

    async def events_since(self, account_id: str, after_seq: int, job_id: str | None, limit: int) -> list[JobEvent]: ...

    async def job_events(self, job_id: str, kinds: Sequence[str]) -> list[JobEvent]: ...


class ResultRecords(Protocol):
    """The records of a job's files: the input file it reads, the result files uploaded under a lease, and the
    result (signed manifest) its finish kept, which receipts are made from."""

    async def get_input_file(self, file_id: str) -> StoredFile | None: ...

    async def result_files(self, job_id: str, lease_id: str) -> list[ResultFile]: ...

    async def result_files_of(self, leases: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[ResultFile]]:
        """The files uploaded under each (job id, lease id), by path, in one statement; a pair with none is
        left out."""

    async def get_result(self, job_id: str) -> StoredResult | None: ...


class JobReadModel(Protocol):
    """Jobs as clients and miners read them: one job, a page of history (list, export), counts and stats, and
    the run times estimates are made from."""

    async def get_job(self, job_id: str) -> Job | None: ...

    async def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """The jobs with these ids that exist, by id, in one statement (a miner's batch of finishes)."""

    async def get_job_with_plan(self, job_id: str) -> tuple[Job, Plan] | None:
        """The job and its account's plan (for `results_expire_at`), in one statement."""

    async def list_jobs(self, where: JobFilter, limit: int, cursor: str | None, with_total: bool = True) -> JobPage:
        """Newest first, by keyset (created_at, id): stable under inserts, each job once. A tag or name filter
        reads an index of its own (no scan of the account's history)."""

    async def job_counts(self, account_id: str) -> dict[JobStatus, int]:
        """The account's jobs by status, as the maintained counts say (statuses with none left out)."""

    async def average_billed_seconds(self, job_type: str, model: str | None, sample: int) -> float | None:
        """How long the last `sample` completed jobs of this type and model ran (for estimates)."""


class JobStore(JobLifecycleStore, JobEventLog, ResultRecords, JobReadModel, Protocol):
    """Every job interface at once, as the SQL job store implements them (for the composition root and the
    store contract tests; a service takes only the nouns it uses)."""


class StatsStore(Protocol):
    """Read models over an account's whole history, from totals kept beside the jobs (not from their rows)."""

    async def job_stats(self, account_id: str, since: datetime | None) -> JobStats:
        """The account's jobs created at or after `since` (all of them without it): how many in each status
        (statuses with none left out), the average run of the completed ones that ran (seconds, to the
        millisecond) and the sum of their costs."""


@dataclass(frozen=True)
class QueuePlace:
    """A pending job and how many pending jobs the claim order takes before it."""

    job_id: str
    type: str
    priority: str
    created_at: datetime
    ahead: int
    capped: bool  # `ahead` reached the cap it was counted to


@dataclass(frozen=True)
class JobActivity:
    """An account's recent activity, read in one snapshot (see `MonitorStore.job_activity`)."""

    event_seq: int  # the account's last event sequence number (0 before its first event)
    queue: list[QueuePlace]
    created_since: dict[str, int]  # the jobs created in the window, by their status now
    waits: list[float]  # seconds from submission to start


class MonitorStore(Protocol):
    """What `GET /v1/monitor/…` reads: each query bounded (a window, a sample, a cap) and on an index, never a
    count over an account's whole history."""

    async def job_activity(
        self, account_id: str, since: datetime, queue_limit: int, ahead_cap: int, sample: int
    ) -> JobActivity:
        """The account's last event number; its `queue_limit` oldest pending jobs, each with the pending jobs of
        its type (every account's) the claim takes first — higher priority, then older — counted up to
        `ahead_cap`; its jobs created at or after `since` by status; and the wait from submission to start of
        those of its `sample` most recent jobs that started."""

    async def held_by(self, miner_ids: Sequence[str]) -> int:
        """How many jobs the given miners hold (assigned, running or canceling)."""


class LedgerStore(Protocol):
    """The append-only ledger: grants, holds, releases, payouts, fees."""

    async def append(self, entries: Sequence[LedgerEntry], now: datetime) -> None: ...

    async def balance_units(self, account_id: str) -> int: ...

    async def held_units(self, account_id: str) -> int:
        """What the account's unfinished jobs hold right now."""

    async def entries(
        self, account_id: str | None, since: datetime | None, until: datetime | None, limit: int, after_id: int
    ) -> list[StoredLedgerEntry]: ...

    async def totals_by_kind(self) -> dict[str, int]:
        """Sum of every entry by kind, over all accounts (for audits and tests)."""


class SpendingStore(Protocol):
    """Accounts' spending limits and alerts; the totals they are checked against are kept by the ledger's
    writes (`LedgerEntry`'s hold, release and charge) and checked at submit in the insert's transaction."""

    async def spending(self, account_id: str, month: int) -> Spending | None:
        """The account's settings and, for `month` (YYYYMM, UTC), what it was charged and holds now."""

    async def set_monthly_limit(self, account_id: str, limit_units: int | None, month: int) -> Spending | None: ...

    async def set_alert(self, account_id: str, threshold_units: int | None, month: int) -> Spending | None:
        """Set or clear the threshold; a new threshold may fire this month even if the old one did."""

    async def last_alert(self, account_id: str) -> SpendingAlert | None:
        """The alert that fired last for the account, if any has."""


class AccountStore(Protocol):
    """Accounts and their API keys."""

    async def ensure_account(self, name: str, plan: Plan | None, now: datetime) -> tuple[Account, bool]:
        """The account with this name, created (with `plan`, default free) if it does not exist; and whether
        this call created it."""

    async def get_account(self, account_id: str) -> Account | None: ...

    async def get_account_by_name(self, name: str) -> Account | None: ...

    async def list_accounts(self) -> list[Account]: ...

    async def set_plan(self, account_id: str, plan: Plan) -> Account | None: ...

    async def create_key(
        self, key_id: str, account_id: str, name: str, role: Role, key_hash: str, prefix: str, now: datetime
    ) -> ApiKey: ...

    async def find_key(self, key_hash: str) -> tuple[ApiKey, Account] | None: ...

    async def list_keys(self, account_id: str | None) -> list[ApiKey]: ...

    async def revoke_key(self, key_id: str, now: datetime) -> ApiKey | None: ...

    async def count_keys(self) -> int: ...

    async def principals_version(self) -> int:
        """A counter that every revocation and plan change moves (whichever process made it): a cache of
        principals is still right while it stands still. Key creation leaves it: no cache holds a key it
        has not seen."""


class MinerStore(Protocol):
    """Registered miners and what they offer."""

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
        """Register, or re-register (same account and name) keeping the miner's id."""

    async def get_miner(self, miner_id: str) -> Miner | None: ...

    async def get_miner_by_name(self, account_id: str, name: str) -> Miner | None: ...

    async def miners_named(self, name: str) -> list[Miner]:
        """Every miner of this name, whichever account registered it (a name is unique per account only)."""

    async def touch(self, miner_id: str, now: datetime) -> None: ...

    async def seen_since(self, moment: datetime) -> list[Miner]: ...


class TemplateStore(Protocol):
    """Each account's job templates, by name."""

    async def save_template(self, template: JobTemplate, max_count: int, replace: bool) -> tuple[JobTemplate, bool]:
        """Store the template and say whether it is new. One of the same account and name is kept (Conflict)
        unless `replace`, which overwrites its settings (keeping its `created_at`); a new one past the
        account's `max_count` templates is refused (Conflict). Nothing is stored when it raises."""

    async def get_template(self, account_id: str, name: str) -> JobTemplate | None: ...

    async def list_templates(self, account_id: str) -> list[JobTemplate]:
        """The account's templates, by name."""

    async def delete_template(self, account_id: str, name: str) -> JobTemplate | None:
        """Delete the template; the one deleted, or None if there was none."""


class WorkflowStore(Protocol):
    """The workflows admins define: one immutable row per (name, version)."""

    async def add_workflow(self, workflow: Workflow, next_version: bool) -> Workflow:
        """Store a new version; with `next_version`, numbered one past the newest of its name (1 for a new
        name), else as `workflow.version`. A version that exists already is a Conflict, and is not changed."""

    async def get_workflow(self, name: str, version: int | None) -> Workflow | None:
        """That version of the workflow, or its newest with `version` None."""

    async def list_workflows(self) -> list[Workflow]:
        """Every version of every workflow, by name, newest version first."""


@dataclass(frozen=True)
class Demand:
    """Pending jobs that ask for the same thing (what matching looks at: type, model, requirements, pin), and
    how many there are."""

    spec: JobSpec
    count: int


@dataclass(frozen=True)
class Load:
    """What one miner is running: its leased jobs and the GPUs they asked for."""

    jobs: int
    gpus: int


class MarketStore(Protocol):
    """The marketplace's aggregates: demand (pending jobs by what they ask for) and each miner's load."""

    async def pending_demand(self, limit: int) -> tuple[list[Demand], bool]:
        """The first `limit` pending jobs, grouped by what they ask for; and whether that was all of them."""

    async def miner_loads(self) -> dict[str, Load]:
        """The load of every miner that holds a lease (assigned, running or canceling jobs)."""
