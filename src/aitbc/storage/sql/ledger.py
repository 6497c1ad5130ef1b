"""The SQL ledger store: append-only money movements; every balance is a sum over them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, insert, select

from aitbc.storage.interfaces import LedgerEntry, StoredLedgerEntry
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.tables import ledger_entries


class SqlLedgerStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def append(self, entries: Sequence[LedgerEntry], now: datetime) -> None:
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
        async with self._db.write() as connection:
            await connection.execute(insert(ledger_entries), rows)

    async def balance_units(self, account_id: str) -> int:
        total = select(func.coalesce(func.sum(ledger_entries.c.amount_units), 0))
        async with self._db.read() as connection:
            return int((await connection.execute(total.where(ledger_entries.c.account_id == account_id))).scalar_one())

    async def held_units(self, account_id: str) -> int:
        """Holds not yet answered by a release (a release is written when the job ends)."""
        released = select(ledger_entries.c.job_id).where(ledger_entries.c.kind == "release")
        open_holds = select(func.coalesce(func.sum(-ledger_entries.c.amount_units), 0)).where(
            ledger_entries.c.account_id == account_id,
            ledger_entries.c.kind == "hold",
            ledger_entries.c.job_id.not_in(released.where(ledger_entries.c.account_id == account_id)),
        )
        async with self._db.read() as connection:
            return int((await connection.execute(open_holds)).scalar_one())

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
        async with self._db.read() as connection:
            rows = (await connection.execute(query.order_by(ledger_entries.c.id).limit(limit))).all()
        return [StoredLedgerEntry(**row._mapping) for row in rows]

    async def totals_by_kind(self) -> dict[str, int]:
        query = select(ledger_entries.c.kind, func.sum(ledger_entries.c.amount_units)).group_by(ledger_entries.c.kind)
        async with self._db.read() as connection:
            return {kind: int(total) for kind, total in (await connection.execute(query)).all()}
