"""miners declare the JSON Schemas of each runtime's input and params (`schemas`)

`schemas` holds `{runtime: {"input": schema, "parameters": schema}}` as the miner registered them. NULL for a
miner registered before this revision (and one that declared none): every input is valid for it, as before.
Added and dropped with plain ALTER TABLE (SQLite 3.35+): `miners` has no triggers, but nothing is rebuilt.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("miners", sa.Column("schemas", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE miners DROP COLUMN schemas")
