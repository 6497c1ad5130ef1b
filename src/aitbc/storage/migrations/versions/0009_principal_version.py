"""a version counter of who may call: every key, plan or account change bumps it in its own transaction

Coordinators cache principals by key hash and read this one row every half second or so; when it moved they
forget what they cached, so a change made straight on the database (`aitbc admin … --data-dir`) reaches them.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "principal_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_principal_version")),
    )
    op.bulk_insert(table, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("principal_version")
