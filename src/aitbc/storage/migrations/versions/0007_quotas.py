"""indexes for disk quotas and the purge of unreferenced blobs

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_input_file_id", "jobs", ["input_file_id"])
    op.create_index("ix_result_files_blob_key", "result_files", ["blob_key"])
    op.create_index("ix_result_files_created_at", "result_files", ["created_at"])
    op.create_index("ix_input_files_blob_key", "input_files", ["blob_key"])
    op.create_index("ix_input_files_created_at", "input_files", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_input_files_created_at", "input_files")
    op.drop_index("ix_input_files_blob_key", "input_files")
    op.drop_index("ix_result_files_created_at", "result_files")
    op.drop_index("ix_result_files_blob_key", "result_files")
    op.drop_index("ix_jobs_input_file_id", "jobs")
