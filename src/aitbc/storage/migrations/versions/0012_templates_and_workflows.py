"""job presets: clients' templates (keyed by account and name) and the admins' workflows (keyed by name and
version), and on each job the preset its settings came from

The two columns on `jobs` are added and dropped in place (SQLite's own ADD / DROP COLUMN, not a batch copy of
the table, which would lose the triggers of 0010 and 0011); nothing reads them but the job's views.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _settings() -> list[sa.Column[object]]:
    """The job settings a preset can hold, every one of them optional but `params`."""
    return [
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("gpu_type", sa.String(length=64), nullable=True),
        sa.Column("gpu_count", sa.Integer(), nullable=True),
        sa.Column("min_vram_gb", sa.Float(), nullable=True),
        sa.Column("priority", sa.String(length=10), nullable=True),
        sa.Column("timeout_seconds", sa.Integer(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "job_templates",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=True),
        *_settings(),
        sa.Column("workflow", sa.String(length=80), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_job_templates_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "name", name=op.f("pk_job_templates")),
    )
    op.create_table(
        "workflows",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        *_settings(),
        sa.Column("allowed_keys", sa.JSON(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_workflows")),
    )
    op.add_column("jobs", sa.Column("template", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("workflow", sa.String(length=80), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "workflow")
    op.drop_column("jobs", "template")
    op.drop_table("workflows")
    op.drop_table("job_templates")
