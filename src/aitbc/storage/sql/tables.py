"""The schema, in one place; Alembic migrations under ``storage/migrations`` create and evolve it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps go in as UTC and come back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


naming = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=naming)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("plan", String(20), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("event_seq", BigInteger, nullable=False, default=0),
    # The sum of the account's ledger entries, moved in the same transaction as each entry (nano-AITBC).
    Column("balance_units", BigInteger, nullable=False, server_default="0"),
    # Spending limits (migration 0016), kept with the balance by the same update so a submit reads them in the
    # statement that reads the balance: what unfinished jobs hold now, what was charged in the UTC month
    # `charged_month` (YYYYMM), the account's monthly cap and alert threshold (NULL: none), and the month the
    # threshold last fired in (cleared when the threshold changes).
    Column("held_units", BigInteger, nullable=False, server_default="0"),
    Column("charged_month", Integer),
    Column("month_charged_units", BigInteger, nullable=False, server_default="0"),
    Column("monthly_limit_units", BigInteger),
    Column("alert_at_units", BigInteger),
    Column("alert_fired_month", Integer),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(20), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime()),
    Column("last_used_at", UtcDateTime()),
)

# One row (id 1): bumped in the transaction of every key, plan or account change, so a coordinator that
# caches principals sees a change made by any process (another replica, `aitbc admin … --data-dir`).
principal_version = Table(
    "principal_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

# How many jobs each account has in each status, so a list's `total` is a sum of a few rows, not a count
# over the whole history. Maintained by triggers on `jobs` (migration 0010): every insert, status move and
# delete, by any writer (the coordinator, the admin CLI, a bench seeding rows), in the writer's transaction.
job_counts = Table(
    "job_counts",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("status", String(12), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# Per account, UTC day of creation and status: how many jobs, how many of them ran (started and completed)
# and for how long in all (microseconds), and what they cost (nano-AITBC), so `/v1/stats` sums a few rows per
# day instead of scanning the history. Maintained by triggers on `jobs` (migration 0011), as job_counts is.
job_stats_daily = Table(
    "job_stats_daily",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("status", String(12), primary_key=True),
    Column("jobs", BigInteger, nullable=False),
    Column("runs", BigInteger, nullable=False),
    Column("run_microseconds", BigInteger, nullable=False),
    Column("cost_units", BigInteger, nullable=False),
)

miners = Table(
    "miners",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("runtimes", JSON, nullable=False),
    Column("models", JSON, nullable=False),
    Column("gpus", JSON, nullable=False),
    Column("max_concurrency", Integer, nullable=False),
    Column("public_key", Text, nullable=False),
    Column("registered_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False, index=True),
    Column("region", String(64)),  # where the miner says it is, lower case (migration 0013)
    # {runtime: {"input": schema, "parameters": schema}}: the JSON Schemas it declared; NULL: none (0017)
    Column("schemas", JSON(none_as_null=True)),
    UniqueConstraint("account_id", "name", name="uq_miners_account_name"),
    Index("ix_miners_name", "name"),  # `--agent-id NAME`: a name is unique per account only
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("model", String(200)),
    Column("input", JSON),
    Column("input_file_id", String(40)),
    Column("params", JSON, nullable=False),
    Column("gpu_type", String(64)),
    Column("gpu_count", Integer, nullable=False),
    Column("min_vram_gb", Float),
    Column("priority", String(10), nullable=False),
    Column("priority_rank", Integer, nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    Column("status", String(12), nullable=False),
    Column("progress", Integer, nullable=False, default=0),
    Column("progress_message", Text),
    Column("miner_id", String(40)),
    Column("lease_id", String(40)),
    Column("lease_expires_at", UtcDateTime()),
    Column("attempt", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("assigned_at", UtcDateTime()),
    Column("started_at", UtcDateTime()),
    Column("completed_at", UtcDateTime()),
    Column("estimated_completion", UtcDateTime()),
    Column("queue_expires_at", UtcDateTime(), nullable=False),
    Column("cancel_requested_at", UtcDateTime()),
    Column("failure_reason", String(32)),
    Column("error", Text),
    Column("exit_code", Integer),
    Column("results_state", String(12), nullable=False, default="none"),
    Column("result_lease_id", String(40)),
    Column("retry_of", String(40)),
    Column("idempotency_key", String(200)),
    Column("request_hash", String(64)),
    # Money, in whole nano-AITBC (see aitbc.domain.money): the hold taken at submit, the estimate, the charge.
    Column("max_cost_units", BigInteger, nullable=False, server_default="0"),
    Column("estimated_cost_units", BigInteger, nullable=False, server_default="0"),
    Column("estimated_time_seconds", Integer, nullable=False, server_default="0"),
    Column("cost_units", BigInteger),
    Column("billed_seconds", Integer),
    # When the miner says the job ran, and the interval charged: the report capped by what we observed.
    Column("reported_started_at", UtcDateTime()),
    Column("reported_ended_at", UtcDateTime()),
    Column("billed_from", UtcDateTime()),
    Column("billed_until", UtcDateTime()),
    # The preset the job's settings came from, if any: the template's name, the workflow as NAME@VERSION.
    Column("template", String(64)),
    Column("workflow", String(80)),
    # The one miner that may run the job (`--agent-id`, migration 0013); NULL for every other job.
    Column("pinned_miner_id", String(40)),
    # The client's name for the job and its tags (a JSON list, NULL when none), shown with it; a tag filter
    # reads `job_tags` instead.
    Column("name", String(200)),
    Column("tags", JSON),
    UniqueConstraint("account_id", "idempotency_key", name="uq_jobs_account_idempotency"),
    Index("ix_jobs_account_created", "account_id", "created_at", "id"),
    Index("ix_jobs_account_status_created_id", "account_id", "status", "created_at", "id"),  # ?status= keyset
    Index("ix_jobs_queue", "status", "type", "priority_rank", "created_at"),
    Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    Index("ix_jobs_status_queue_ttl", "status", "queue_expires_at"),
    Index("ix_jobs_miner_status", "miner_id", "status"),
    # Pinned jobs only (partial: an unpinned job's insert does not touch it): the reaper's pinned jobs of lost
    # miners and a miner's pinned queue at re-registration.
    Index(
        "ix_jobs_pinned",
        "status",
        "pinned_miner_id",
        sqlite_where=text("pinned_miner_id IS NOT NULL"),
        postgresql_where=text("pinned_miner_id IS NOT NULL"),
    ),
)

job_events = Table(
    "job_events",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("job_id", String(40), nullable=False),
    Column("kind", String(32), nullable=False),  # status, progress, log; billing.alert (an account's event)
    Column("status", String(12), nullable=False),
    Column("progress", Integer, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("data", JSON, nullable=False),
    Index("ix_job_events_job", "job_id", "seq"),
)

input_files = Table(
    "input_files",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("blob_key", String(300), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

result_files = Table(
    "result_files",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("lease_id", String(40), primary_key=True),
    Column("path", String(500), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("blob_key", String(700), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # Computed while the blob was written, for the zip's headers; null only for files recorded before 0008,
    # filled in on their first zip download.
    Column("crc32", BigInteger),
)

job_results = Table(
    "job_results",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("lease_id", String(40), nullable=False),
    Column("miner_id", String(40), nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("miner_signature", Text, nullable=False),
    Column("partial", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # The key that signed the manifest and what the miner reports it used (CPU time, memory, tokens, …).
    Column("miner_public_key", Text, nullable=False, server_default=""),
    Column("usage", JSON),
    # How the job's time on the miner went (setup, model load, run, upload), as it reported it.
    Column("timings", JSON),
)

# -- results: downloads, receipts, share links, retention ------------------------------------------------

# The sweeper finds available results by completion time.
Index("ix_jobs_results_state_completed", jobs.c.results_state, jobs.c.completed_at)

receipts = Table(
    "receipts",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("document", Text, nullable=False),
    Column("signature", Text, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("issued_at", UtcDateTime(), nullable=False),
)

result_shares = Table(
    "result_shares",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("job_id", String(40), nullable=False, index=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime()),
    Column("download_count", Integer, nullable=False, default=0),
    Column("last_download_at", UtcDateTime()),
)

result_purges = Table(
    "result_purges",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("queued_at", UtcDateTime(), nullable=False, index=True),
)

# -- disk quotas: the sweeper finds unreferenced files and blobs, and input files nothing unfinished uses ---------

Index("ix_jobs_input_file_id", jobs.c.input_file_id)
Index("ix_result_files_blob_key", result_files.c.blob_key)
Index("ix_result_files_created_at", result_files.c.created_at)
Index("ix_input_files_blob_key", input_files.c.blob_key)
Index("ix_input_files_created_at", input_files.c.created_at)

# -- billing: an append-only ledger; balances are sums over it ---------------------------------------------

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("job_id", String(40)),
    Column("kind", String(12), nullable=False),
    Column("amount_units", BigInteger, nullable=False),
    Column("memo", Text, nullable=False, server_default=""),
    Column("created_at", UtcDateTime(), nullable=False),
    # A job is held, released, paid out and feed at most once: settlement is exactly-once by construction.
    UniqueConstraint("job_id", "kind", name="uq_ledger_entries_job_kind"),
    Index("ix_ledger_entries_account_created", "account_id", "created_at", "id"),
)

# Every spending alert that fired: once per account, UTC month (YYYYMM) and threshold, with the charges that
# reached it and the job whose settlement did. The record `aitbc billing alert` shows, and what a webhook sender
# can deliver from.
spending_alerts = Table(
    "spending_alerts",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.id"), primary_key=True),
    Column("month", Integer, primary_key=True, autoincrement=False),
    Column("threshold_units", BigInteger, primary_key=True, autoincrement=False),
    Column("charged_units", BigInteger, nullable=False),
    Column("job_id", String(40), nullable=False),
    Column("fired_at", UtcDateTime(), nullable=False),
)

# -- presets: clients' job templates and the admins' versioned workflows ------------------------------------

# A client's named job settings, private to its account; a NULL setting is one the template leaves unset.
job_templates = Table(
    "job_templates",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.id"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("type", String(64)),
    Column("model", String(200)),
    Column("params", JSON, nullable=False),
    Column("gpu_type", String(64)),
    Column("gpu_count", Integer),
    Column("min_vram_gb", Float),
    Column("priority", String(10)),
    Column("timeout_seconds", Integer),
    Column("workflow", String(80)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# An admin's preset, one row per version, never changed once written; `allowed_keys` NULL: any parameter.
workflows = Table(
    "workflows",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("type", String(64), nullable=False),
    Column("model", String(200)),
    Column("params", JSON, nullable=False),
    Column("gpu_type", String(64)),
    Column("gpu_count", Integer),
    Column("min_vram_gb", Float),
    Column("priority", String(10)),
    Column("timeout_seconds", Integer),
    Column("allowed_keys", JSON),
    Column("description", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

# -- names and tags: finding a client's jobs by what it called them ------------------------------------------

# `?name=` is a keyset range on this index, which holds only the jobs that have a name: a submit without one
# writes nothing to it.
Index(
    "ix_jobs_account_name_created",
    jobs.c.account_id,
    jobs.c.name,
    jobs.c.created_at,
    jobs.c.id,
    sqlite_where=jobs.c.name.is_not(None),
    postgresql_where=jobs.c.name.is_not(None),
)

# One row per tag of a job, written with the job (none for a job without tags). The key is the order a
# `?tag=` page reads: the account's jobs with that tag, newest first, a keyset range like the job list's.
job_tags = Table(
    "job_tags",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("tag", String(64), primary_key=True),
    Column("created_at", UtcDateTime(), primary_key=True),
    Column("job_id", String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
)
