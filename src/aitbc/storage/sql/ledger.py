"""The SQL ledger store: append-only money movements, and each account's running sum of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, insert, select, update

from aitbc.storage.interfaces import LedgerEntry, StoredLedgerEntry
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.one_statement import count, every_row
from aitbc.storage.sql.prepared import run, run_many
from aitbc.storage.sql.tables import accounts, ledger_entries

# Built once: every job's hold and settlement writes them (see `jobs.py` on why).
_INSERT_ENTRIES = insert(ledger_entries)
_MOVE_BALANCE = (
    update(accounts)
    .where(accounts.c.id == bindparam("moved_account"))
    .values(balance_units=accounts.c.balance_units + bindparam("moved_units"))
)


def write_ledger(connection: Connection, entries: Sequence[LedgerEntry], now: datetime) -> None:
    """Append entries and move each account's running balance with them, in the caller's transaction: the
    ledger is the record, the running balance a sum kept with it so checks need not add up all history."""
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
    moved: dict[str, int] = {}
    for entry in entries:
        moved[entry.account_id] = moved.get(entry.account_id, 0) + entry.amount_units
    for account_id, amount in sorted(moved.items()):
        run(connection, _MOVE_BALANCE, {"moved_account": account_id, "moved_units": amount})


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
