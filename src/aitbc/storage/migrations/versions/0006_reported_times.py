"""jobs keep the run times the miner reported and the interval billing charged for

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = ("reported_started_at", "reported_ended_at", "billed_from", "billed_until")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for column in COLUMNS:
            batch.add_column(sa.Column(column, sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
