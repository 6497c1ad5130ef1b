"""miners say where they are (`region`), and a job can be pinned to one miner (`pinned_miner_id`)

`region` is what `aitbc miner run --region` registers (lower case; NULL for a miner that did not say), shown
and filtered on by the marketplace. `pinned_miner_id` is the miner `aitbc client submit --agent-id` resolved
to; NULL for every other job, so the partial index on (status, pinned_miner_id) holds pinned jobs only and an
unpinned submit does not write to it. `ix_miners_name` finds a miner by name across accounts (`--agent-id
NAME`). Columns are added and dropped with plain ALTER TABLE (SQLite 3.35+), never by rebuilding `jobs`:
a rebuild would drop the triggers that keep job_counts and job_stats_daily.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

PINNED = sa.text("pinned_miner_id IS NOT NULL")


def upgrade() -> None:
    op.add_column("miners", sa.Column("region", sa.String(length=64), nullable=True))
    op.create_index("ix_miners_name", "miners", ["name"])
    op.add_column("jobs", sa.Column("pinned_miner_id", sa.String(length=40), nullable=True))
    op.create_index(
        "ix_jobs_pinned", "jobs", ["status", "pinned_miner_id"], sqlite_where=PINNED, postgresql_where=PINNED
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_pinned", table_name="jobs")
    op.execute("ALTER TABLE jobs DROP COLUMN pinned_miner_id")
    op.drop_index("ix_miners_name", table_name="miners")
    op.execute("ALTER TABLE miners DROP COLUMN region")
