"""The SQL ledger store: append-only money movements, and each account's running sum of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import BigInteger, Connection, Integer, bindparam, case, func, insert, select, update

from aitbc.domain.spending import SpendingAlert, month_of
from aitbc.storage.interfaces import LedgerEntry, StoredLedgerEntry
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.one_statement import count, every_row
from aitbc.storage.sql.prepared import run, run_many
from aitbc.storage.sql.spending import record_alert
from aitbc.storage.sql.tables import accounts, ledger_entries

# Built once: every job's hold and settlement writes them (see `jobs.py` on why).
_INSERT_ENTRIES = insert(ledger_entries)
_MONTH = bindparam("moved_month", type_=Integer)
_CHARGE = bindparam("moved_charge", type_=BigInteger)
# The balance, and the spending totals with it: what unfinished jobs hold, and what was charged in the month of
# the latest charge (a charge dated before that month, a replica's clock behind another's, is left out of it).
_MOVE_BALANCE = (
    update(accounts)
    .where(accounts.c.id == bindparam("moved_account"))
    .values(
        balance_units=accounts.c.balance_units + bindparam("moved_units", type_=BigInteger),
        held_units=accounts.c.held_units + bindparam("moved_held", type_=BigInteger),
        month_charged_units=case(
            (accounts.c.charged_month == _MONTH, accounts.c.month_charged_units + _CHARGE),
            (accounts.c.charged_month > _MONTH, accounts.c.month_charged_units),
            else_=_CHARGE,
        ),
        charged_month=case((accounts.c.charged_month > _MONTH, accounts.c.charged_month), else_=_MONTH),
    )
    .returning(
        accounts.c.charged_month,
        accounts.c.month_charged_units,
        accounts.c.alert_at_units,
        accounts.c.alert_fired_month,
    )
)


@dataclass
class _Moved:
    """What a write moves on one account: its balance, its holds, the month's charges, and which entries charged."""

    units: int = 0
    held: int = 0
    charged: int = 0
    charges: list[LedgerEntry] = field(default_factory=list)

    def add(self, entry: LedgerEntry) -> None:
        self.units += entry.amount_units
        if entry.kind == "hold":
            self.held -= entry.amount_units
        elif entry.kind == "release":  # the hold ends: what comes back and what was charged
            self.held -= entry.amount_units + entry.charged_units
            if entry.charged_units > 0:
                self.charged += entry.charged_units
                self.charges.append(entry)


def _crossing(moved: _Moved, month_charged: int, threshold: int) -> str:
    """The job whose charge took the month to the threshold (the first of this write's that did)."""
    running = month_charged - moved.charged
    for entry in moved.charges:
        running += entry.charged_units
        if running >= threshold:
            return entry.job_id or ""
    return moved.charges[-1].job_id or ""


def write_ledger(connection: Connection, entries: Sequence[LedgerEntry], now: datetime) -> list[SpendingAlert]:
    """Append entries and move each account's running balance with them, in the caller's transaction: the
    ledger is the record, the running balance a sum kept with it so checks need not add up all history. The
    spending totals move in the same update; a charge that takes the month to the account's alert threshold
    records the alert (once per month and threshold), and the alerts recorded are returned."""
    rows = [
        {
            "account_id": e.account_id,
            "job_id": e.job_id,
            "kind": e.kind,
            "amount_units": e.amount_units,
            "memo": e.memo,
            "created_at": now,
        }
        for e in entries
    ]
    run_many(connection, _INSERT_ENTRIES, rows)
    moved: dict[str, _Moved] = {}
    for entry in entries:
        moved.setdefault(entry.account_id, _Moved()).add(entry)
    month = month_of(now)
    alerts: list[SpendingAlert] = []
    for account_id, change in sorted(moved.items()):
        parameters = {
            "moved_account": account_id,
            "moved_units": change.units,
            "moved_held": change.held,
            "moved_charge": change.charged,
            "moved_month": month,
        }
        returned = run(connection, _MOVE_BALANCE, parameters)
        if not returned or change.charged <= 0:
            continue
        charged_month, month_charged, threshold, fired_month = returned[0]
        if threshold is None or charged_month != month or fired_month == month or month_charged < threshold:
            continue
        alert = SpendingAlert(
            account_id=account_id,
            month=month,
            threshold_units=int(threshold),
            charged_units=int(month_charged),
            job_id=_crossing(change, int(month_charged), int(threshold)),
            fired_at=now,
        )
        if record_alert(connection, alert):
            alerts.append(alert)
    return alerts


def balance_units(connection: Connection, account_id: str) -> int:
    query = select(accounts.c.balance_units).where(accounts.c.id == account_id)
    return int(connection.execute(query).scalar() or 0)


class SqlLedgerStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def append(self, entries: Sequence[LedgerEntry], now: datetime) -> None:
        await self._db.write(lambda connection: write_ledger(connection, entries, now))

    async def balance_units(self, account_id: str) -> int:
        return await self._db.read(lambda connection: balance_units(connection, account_id))

    async def summed_balance_units(self, account_id: str) -> int:
        """The balance added up from the ledger itself (for audits: it must equal the running balance)."""
        total = select(func.coalesce(func.sum(ledger_entries.c.amount_units), 0))
        return await self._db.read(count(total.where(ledger_entries.c.account_id == account_id)))

    async def held_units(self, account_id: str) -> int:
        """Holds not yet answered by a release (a release is written when the job ends)."""
        released = select(ledger_entries.c.job_id).where(ledger_entries.c.kind == "release")
        open_holds = select(func.coalesce(func.sum(-ledger_entries.c.amount_units), 0)).where(
            ledger_entries.c.account_id == account_id,
            ledger_entries.c.kind == "hold",
            ledger_entries.c.job_id.not_in(released.where(ledger_entries.c.account_id == account_id)),
        )
        return await self._db.read(count(open_holds))

    async def entries(
        self, account_id: str | None, since: datetime | None, until: datetime | None, limit: int, after_id: int
    ) -> list[StoredLedgerEntry]:
        query = select(ledger_entries).where(ledger_entries.c.id > after_id)
        if account_id is not None:
            query = query.where(ledger_entries.c.account_id == account_id)
        if since is not None:
            query = query.where(ledger_entries.c.created_at >= since)
        if until is not None:
            query = query.where(ledger_entries.c.created_at < until)
        rows = await self._db.read(every_row(query.order_by(ledger_entries.c.id).limit(limit)))
        return [StoredLedgerEntry(**row._mapping) for row in rows]

    async def totals_by_kind(self) -> dict[str, int]:
        query = select(ledger_entries.c.kind, func.sum(ledger_entries.c.amount_units).label("total")).group_by(
            ledger_entries.c.kind
        )
        return {row.kind: int(row.total) for row in await self._db.read(every_row(query))}
