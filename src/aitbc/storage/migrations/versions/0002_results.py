"""results: CRC-32 cache, receipts, share links, purge queue, retention index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "result_file_crc32",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("lease_id", sa.String(length=40), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("crc32", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "lease_id", "path", name=op.f("pk_result_file_crc32")),
    )
    op.create_table(
        "receipts",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_receipts")),
    )
    op.create_table(
        "result_shares",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("download_count", sa.Integer(), nullable=False),
        sa.Column("last_download_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_result_shares_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_shares")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_result_shares_token_hash")),
    )
    with op.batch_alter_table("result_shares", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_result_shares_job_id"), ["job_id"], unique=False)

    op.create_table(
        "result_purges",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_result_purges")),
    )
    with op.batch_alter_table("result_purges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_result_purges_queued_at"), ["queued_at"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_results_state_completed", ["results_state", "completed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_results_state_completed")

    with op.batch_alter_table("result_purges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_purges_queued_at"))

    op.drop_table("result_purges")
    with op.batch_alter_table("result_shares", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_shares_job_id"))

    op.drop_table("result_shares")
    op.drop_table("receipts")
    op.drop_table("result_file_crc32")
