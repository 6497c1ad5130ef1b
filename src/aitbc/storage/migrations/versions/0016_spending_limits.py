"""spending limits: an account's monthly cap and alert threshold, the totals they are checked against, and the
alerts that fired

The totals sit on the account's row beside the running balance, moved by the same update as each ledger write
(`storage.sql.ledger.write_ledger`): `held_units`, what unfinished jobs hold, and `month_charged_units`, what was
charged in the UTC month `charged_month` (YYYYMM). A submit reads them with the balance, in the statement that
locks the account. They are backfilled here from the ledger: the holds no release has ended, and the charges
(hold less release) of the releases written this month. `job_events.kind` widens to 32 characters for
`billing.alert`, the account event an alert publishes (on SQLite, which does not enforce the length, by a copy of
the table; job_events has no triggers to lose).

Revision ID: 0016
Revises: 0015
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_HELD = (
    "UPDATE accounts SET held_units = COALESCE((SELECT -SUM(h.amount_units) FROM ledger_entries h "
    "WHERE h.account_id = accounts.id AND h.kind = 'hold' AND NOT EXISTS (SELECT 1 FROM ledger_entries r "
    "WHERE r.job_id = h.job_id AND r.kind = 'release')), 0)"
)
_CHARGED = (
    "UPDATE accounts SET charged_month = {month}, month_charged_units = COALESCE((SELECT "
    "SUM(-(h.amount_units + r.amount_units)) FROM ledger_entries r JOIN ledger_entries h ON h.job_id = r.job_id "
    "AND h.kind = 'hold' WHERE r.account_id = accounts.id AND r.kind = 'release' AND r.created_at >= {start}), 0)"
)


def _kind(batch: object, length: int, was: int) -> None:
    batch.alter_column(  # type: ignore[attr-defined]
        "kind", type_=sa.String(length=length), existing_type=sa.String(length=was), existing_nullable=False
    )


def upgrade() -> None:
    op.add_column("accounts", sa.Column("held_units", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("accounts", sa.Column("charged_month", sa.Integer(), nullable=True))
    op.add_column("accounts", sa.Column("month_charged_units", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("accounts", sa.Column("monthly_limit_units", sa.BigInteger(), nullable=True))
    op.add_column("accounts", sa.Column("alert_at_units", sa.BigInteger(), nullable=True))
    op.add_column("accounts", sa.Column("alert_fired_month", sa.Integer(), nullable=True))
    op.create_table(
        "spending_alerts",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("month", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("threshold_units", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("charged_units", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_spending_alerts_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "month", "threshold_units", name=op.f("pk_spending_alerts")),
    )
    with op.batch_alter_table("job_events") as batch:
        _kind(batch, 32, 12)
    now = datetime.now(UTC)
    postgres = op.get_bind().dialect.name == "postgresql"
    start = f"'{now:%Y-%m}-01 00:00:00{'+00' if postgres else '.000000'}'"
    op.execute(_HELD)
    op.execute(_CHARGED.format(month=now.year * 100 + now.month, start=start))


def downgrade() -> None:
    op.execute("DELETE FROM job_events WHERE kind = 'billing.alert'")  # account events: no room for the kind
    with op.batch_alter_table("job_events") as batch:
        _kind(batch, 12, 32)
    op.drop_table("spending_alerts")
    for column in (
        "alert_fired_month",
        "alert_at_units",
        "monthly_limit_units",
        "month_charged_units",
        "charged_month",
        "held_units",
    ):
        op.drop_column("accounts", column)
