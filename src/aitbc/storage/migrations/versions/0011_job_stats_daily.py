"""per-account, per-day, per-status job totals kept by triggers on `jobs`, so `/v1/stats` needs no scan of the
history

A job counts in the bucket of its account, the UTC day it was created (the day of the `created_at` that
`/v1/stats?days=` filters on) and its status: one job, whether it has a run (both `started_at` and
`completed_at`, as the average of run times counts them) and how long it ran, in whole microseconds (on SQLite
the millisecond `julianday` gives, as the scan over `jobs` had it), and its cost. The triggers are the one
place the totals change: an insert adds the row's share, a delete takes it away, and an update of a column the
share depends on takes the old share away and adds the new one — in the writer's transaction, whoever writes.
On PostgreSQL they fire after job_counts' (triggers fire in name order) and a status move takes its two rows
in the order of their status names, as job_counts does, so they add no new lock order. Existing rows are
summed once here.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# What decides a row's share: a change to any other column leaves the totals as they are.
_COLUMNS = ("account_id", "created_at", "status", "started_at", "completed_at", "cost_units")

_SUMMED = ("jobs", "runs", "run_microseconds", "cost_units")
_TOTALS = ", ".join(("account_id", "day", "status", *_SUMMED))


def _day(row: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"({row}created_at AT TIME ZONE 'UTC')::date"
    return f"date({row}created_at)"


def _run_microseconds(row: str, dialect: str) -> str:
    """NULL without a run. Kept the same as `storage.sql.stats.run_microseconds`."""
    if dialect == "postgresql":
        return f"round(extract(epoch FROM {row}completed_at - {row}started_at) * 1000000)::bigint"
    return f"CAST(round((julianday({row}completed_at) - julianday({row}started_at)) * 86400000.0) AS INTEGER) * 1000"


def _add(row: str, sign: str, dialect: str) -> str:
    """Add (sign '+') or take away (sign '-') the share of the row `row` names (NEW. or OLD.)."""
    run = _run_microseconds(row, dialect)
    kept = "job_stats_daily." if dialect == "postgresql" else ""  # SQLite's triggers take no qualified names
    summed = ", ".join(f"{total} = {kept}{total} + excluded.{total}" for total in _SUMMED)
    return (
        f"INSERT INTO job_stats_daily ({_TOTALS}) "  # noqa: S608 - constant text
        f"VALUES ({row}account_id, {_day(row, dialect)}, {row}status, {sign}1, "
        f"{sign}(CASE WHEN {row}started_at IS NULL OR {row}completed_at IS NULL THEN 0 ELSE 1 END), "
        f"{sign}coalesce({run}, 0), "
        f"{sign}coalesce({row}cost_units, 0)) "
        f"ON CONFLICT (account_id, day, status) DO UPDATE SET {summed};"
    )


def _changed(distinct: str) -> str:
    return " OR ".join(f"OLD.{column} {distinct} NEW.{column}" for column in _COLUMNS)


_SQLITE = [
    f"CREATE TRIGGER job_stats_daily_insert AFTER INSERT ON jobs BEGIN {_add('NEW.', '+', 'sqlite')} END",
    f"CREATE TRIGGER job_stats_daily_update AFTER UPDATE OF {', '.join(_COLUMNS)} ON jobs WHEN {_changed('IS NOT')} "
    f"BEGIN {_add('OLD.', '-', 'sqlite')} {_add('NEW.', '+', 'sqlite')} END",
    f"CREATE TRIGGER job_stats_daily_delete AFTER DELETE ON jobs BEGIN {_add('OLD.', '-', 'sqlite')} END",
]

_POSTGRESQL = [
    f"""
    CREATE FUNCTION job_stats_daily_keep() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'UPDATE' AND OLD.status > NEW.status THEN
        {_add("NEW.", "+", "postgresql")}
        {_add("OLD.", "-", "postgresql")}
        RETURN NULL;
      END IF;
      IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {_add("OLD.", "-", "postgresql")}
      END IF;
      IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {_add("NEW.", "+", "postgresql")}
      END IF;
      RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER job_stats_daily_insert_delete AFTER INSERT OR DELETE ON jobs FOR EACH ROW "
    "EXECUTE FUNCTION job_stats_daily_keep()",
    f"CREATE TRIGGER job_stats_daily_update AFTER UPDATE OF {', '.join(_COLUMNS)} ON jobs FOR EACH ROW "
    f"WHEN ({_changed('IS DISTINCT FROM')}) EXECUTE FUNCTION job_stats_daily_keep()",
]


def _backfill(dialect: str) -> str:
    run = _run_microseconds("", dialect)
    day = _day("", dialect)
    return (
        f"INSERT INTO job_stats_daily ({_TOTALS}) "  # noqa: S608 - constant text
        f"SELECT account_id, {day}, status, count(*), count({run}), coalesce(sum({run}), 0), "
        f"coalesce(sum(cost_units), 0) FROM jobs GROUP BY account_id, {day}, status"
    )


def upgrade() -> None:
    op.create_table(
        "job_stats_daily",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("run_microseconds", sa.BigInteger(), nullable=False),
        sa.Column("cost_units", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "day", "status", name=op.f("pk_job_stats_daily")),
    )
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRESQL if dialect == "postgresql" else _SQLITE:
        op.execute(statement)
    op.execute(_backfill(dialect))  # after the triggers: on PostgreSQL they lock out writers until the commit


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER job_stats_daily_update ON jobs")
        op.execute("DROP TRIGGER job_stats_daily_insert_delete ON jobs")
        op.execute("DROP FUNCTION job_stats_daily_keep()")
    else:
        for name in ("job_stats_daily_insert", "job_stats_daily_update", "job_stats_daily_delete"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("job_stats_daily")
