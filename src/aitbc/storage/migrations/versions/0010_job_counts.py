"""per-account, per-status job counts kept by triggers on `jobs`, so a list's `total` needs no count

The triggers are the one place the counts change: every insert, status move and delete of a job, whoever
writes it, updates them in the same transaction. On PostgreSQL a move takes the two count rows it changes in
the order of their status names, so two moves in opposite directions cannot deadlock on them. Existing rows
are counted once here.

The per-status index gains `id`, so a `?status=` page is a keyset range on it too: (created_at, id) in order,
no sort, whatever the history's size.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_BACKFILL = (
    "INSERT INTO job_counts (account_id, status, count) SELECT account_id, status, count(*) FROM jobs "
    "GROUP BY account_id, status"
)

_SQLITE_UP = (
    "INSERT INTO job_counts (account_id, status, count) VALUES (NEW.account_id, NEW.status, 1) "
    "ON CONFLICT (account_id, status) DO UPDATE SET count = count + 1;"
)
_SQLITE_DOWN = "UPDATE job_counts SET count = count - 1 WHERE account_id = OLD.account_id AND status = OLD.status;"
_SQLITE = [
    f"CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN {_SQLITE_UP} END",
    "CREATE TRIGGER job_counts_move AFTER UPDATE OF status ON jobs WHEN OLD.status <> NEW.status "
    f"BEGIN {_SQLITE_DOWN} {_SQLITE_UP} END",
    f"CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN {_SQLITE_DOWN} END",
]

_POSTGRESQL = [
    """
    CREATE FUNCTION job_counts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'UPDATE' AND OLD.status > NEW.status THEN
        INSERT INTO job_counts (account_id, status, count) VALUES (NEW.account_id, NEW.status, 1)
          ON CONFLICT (account_id, status) DO UPDATE SET count = job_counts.count + 1;
        UPDATE job_counts SET count = count - 1 WHERE account_id = OLD.account_id AND status = OLD.status;
        RETURN NULL;
      END IF;
      IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE job_counts SET count = count - 1 WHERE account_id = OLD.account_id AND status = OLD.status;
      END IF;
      IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO job_counts (account_id, status, count) VALUES (NEW.account_id, NEW.status, 1)
          ON CONFLICT (account_id, status) DO UPDATE SET count = job_counts.count + 1;
      END IF;
      RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER job_counts_insert_delete AFTER INSERT OR DELETE ON jobs FOR EACH ROW "
    "EXECUTE FUNCTION job_counts_keep()",
    "CREATE TRIGGER job_counts_move AFTER UPDATE OF status ON jobs FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION job_counts_keep()",
]


def upgrade() -> None:
    op.create_table(
        "job_counts",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "status", name=op.f("pk_job_counts")),
    )
    statements = _POSTGRESQL if op.get_bind().dialect.name == "postgresql" else _SQLITE
    for statement in statements:
        op.execute(statement)
    op.execute(_BACKFILL)
    op.create_index("ix_jobs_account_status_created_id", "jobs", ["account_id", "status", "created_at", "id"])
    op.drop_index("ix_jobs_account_status_created", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_account_status_created", "jobs", ["account_id", "status", "created_at"])
    op.drop_index("ix_jobs_account_status_created_id", table_name="jobs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER job_counts_move ON jobs")
        op.execute("DROP TRIGGER job_counts_insert_delete ON jobs")
        op.execute("DROP FUNCTION job_counts_keep()")
    else:
        for name in ("job_counts_insert", "job_counts_move", "job_counts_delete"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("job_counts")
