"""job names and tags: a client's name for a job and its labels, shown with the job and filtered on

`jobs.name` and `jobs.tags` (a JSON list) are added in place (SQLite's own ADD / DROP COLUMN, not a batch copy
of the table, which would lose the triggers of 0010 and 0011); the job's views read them with the job's row.
A `?name=` filter is a keyset range on a partial index that holds only named jobs, and a `?tag=` filter one on
`job_tags` (a row per tag of a job, keyed in the order a page reads), so a job without a name or tags costs a
submit nothing more.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("name", sa.String(length=200), nullable=True))
    op.add_column("jobs", sa.Column("tags", sa.JSON(), nullable=True))
    named = sa.text("name IS NOT NULL")
    op.create_index(
        "ix_jobs_account_name_created",
        "jobs",
        ["account_id", "name", "created_at", "id"],
        sqlite_where=named,
        postgresql_where=named,
    )
    op.create_table(
        "job_tags",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_tags_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "tag", "created_at", "job_id", name=op.f("pk_job_tags")),
    )


def downgrade() -> None:
    op.drop_table("job_tags")
    op.drop_index("ix_jobs_account_name_created", table_name="jobs")
    op.drop_column("jobs", "tags")
    op.drop_column("jobs", "name")
