"""The SQL spending store: accounts' monthly caps and alert thresholds, and the record of alerts that fired.

The totals they are checked against (`held_units`, `month_charged_units` of `charged_month`) sit on the account's
row and move with its balance in `ledger.write_ledger`, which calls `record_alert` when a settlement takes the
month's charges to the threshold: in the settling transaction, under the account's row lock, so an alert is
recorded once whichever replica settles.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, case, insert, literal, select, update

from aitbc.domain.spending import Spending, SpendingAlert
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.tables import accounts, spending_alerts


def _spending_columns(month: int) -> list[Any]:
    """The account's settings and totals, this month's charges as 0 when the last charge was in another month."""
    charged = case((accounts.c.charged_month == literal(month), accounts.c.month_charged_units), else_=0)
    return [
        accounts.c.id,
        accounts.c.monthly_limit_units,
        accounts.c.alert_at_units,
        charged.label("charged_units"),
        accounts.c.held_units,
        accounts.c.alert_fired_month,
    ]


def _spending(row: RowMapping, month: int) -> Spending:
    return Spending(
        account_id=row["id"],
        month=month,
        monthly_limit_units=row["monthly_limit_units"],
        alert_at_units=row["alert_at_units"],
        charged_units=int(row["charged_units"]),
        held_units=int(row["held_units"]),
        alert_fired_month=row["alert_fired_month"],
    )


def record_alert(connection: Connection, alert: SpendingAlert) -> bool:
    """Record that `alert` fired, unless its account, month and threshold already did (a threshold set back to
    one that fired this month); and that the account's threshold fired this month. Whether it is new. The
    caller holds the account's row (its balance update), so nothing else records for it meanwhile."""
    key = (
        spending_alerts.c.account_id == alert.account_id,
        spending_alerts.c.month == alert.month,
        spending_alerts.c.threshold_units == alert.threshold_units,
    )
    fired_before = connection.execute(select(spending_alerts.c.month).where(*key)).first() is not None
    if not fired_before:
        connection.execute(insert(spending_alerts).values(**alert.__dict__))
    connection.execute(update(accounts).where(accounts.c.id == alert.account_id).values(alert_fired_month=alert.month))
    return not fired_before


class SqlSpendingStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def spending(self, account_id: str, month: int) -> Spending | None:
        query = select(*_spending_columns(month)).where(accounts.c.id == account_id)
        row = await self._db.read(lambda connection: connection.execute(query).first())
        return _spending(row._mapping, month) if row is not None else None

    async def set_monthly_limit(self, account_id: str, limit_units: int | None, month: int) -> Spending | None:
        change = update(accounts).where(accounts.c.id == account_id).values(monthly_limit_units=limit_units)
        return await self._change(change, month)

    async def set_alert(self, account_id: str, threshold_units: int | None, month: int) -> Spending | None:
        values: dict[str, Any] = {"alert_at_units": threshold_units}
        # A new threshold has not fired: it may this month, at the next charge, if the month is already past it.
        values["alert_fired_month"] = case(
            (accounts.c.alert_at_units == literal(threshold_units), accounts.c.alert_fired_month), else_=None
        )
        change = update(accounts).where(accounts.c.id == account_id).values(values)
        return await self._change(change, month)

    async def _change(self, change: Any, month: int) -> Spending | None:
        row = await self._db.write(
            lambda connection: connection.execute(change.returning(*_spending_columns(month))).first()
        )
        return _spending(row._mapping, month) if row is not None else None

    async def last_alert(self, account_id: str) -> SpendingAlert | None:
        query = (
            select(spending_alerts)
            .where(spending_alerts.c.account_id == account_id)
            .order_by(spending_alerts.c.fired_at.desc(), spending_alerts.c.month.desc())
            .limit(1)
        )
        row = await self._db.read(lambda connection: connection.execute(query).first())
        return SpendingAlert(**row._mapping) if row is not None else None
