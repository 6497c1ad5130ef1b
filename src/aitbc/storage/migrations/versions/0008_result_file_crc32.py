"""result files keep the CRC-32 computed while their blob was written; the separate CRC-32 cache goes

CRC-32s the cache already held move onto their file records; files recorded before this revision that no
zip download has read yet keep a null CRC-32, which the first zip download computes once and stores.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CACHED = (
    "SELECT c.crc32 FROM result_file_crc32 c WHERE c.job_id = result_files.job_id "
    "AND c.lease_id = result_files.lease_id AND c.path = result_files.path"
)


def upgrade() -> None:
    with op.batch_alter_table("result_files") as batch:
        batch.add_column(sa.Column("crc32", sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE result_files SET crc32 = ({CACHED})")  # noqa: S608 - constant text
    op.drop_table("result_file_crc32")


def downgrade() -> None:
    op.create_table(
        "result_file_crc32",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("lease_id", sa.String(length=40), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("crc32", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "lease_id", "path", name=op.f("pk_result_file_crc32")),
    )
    op.execute(
        "INSERT INTO result_file_crc32 (job_id, lease_id, path, crc32) "
        "SELECT job_id, lease_id, path, crc32 FROM result_files WHERE crc32 IS NOT NULL"
    )
    with op.batch_alter_table("result_files") as batch:
        batch.drop_column("crc32")
