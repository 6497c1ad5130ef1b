"""accounts keep a running balance beside the ledger

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("balance_units", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE accounts SET balance_units = "
        "(SELECT COALESCE(SUM(amount_units), 0) FROM ledger_entries WHERE ledger_entries.account_id = accounts.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("balance_units")
