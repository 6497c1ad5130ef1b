"""billing: job costs and the ledger

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("max_cost_units", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("estimated_cost_units", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("estimated_time_seconds", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cost_units", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("billed_seconds", sa.Integer(), nullable=True))
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("amount_units", sa.BigInteger(), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_ledger_entries_account_id_accounts"),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.UniqueConstraint("job_id", "kind", name="uq_ledger_entries_job_kind"),
    )
    op.create_index("ix_ledger_entries_account_created", "ledger_entries", ["account_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_account_created", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    with op.batch_alter_table("jobs") as batch:
        for column in (
            "billed_seconds",
            "cost_units",
            "estimated_time_seconds",
            "estimated_cost_units",
            "max_cost_units",
        ):
            batch.drop_column(column)
