"""The SQL account store: accounts and their hashed API keys.

A revocation or a plan change bumps the principal version in its own transaction: coordinators cache
principals and read that one row now and then to learn of changes made by any process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from aitbc.domain.accounts import Account, ApiKey
from aitbc.domain.identifiers import new_account_id
from aitbc.domain.plans import Plan, Role
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.one_statement import count, every_row, first, rows_changed
from aitbc.storage.sql.rows import account_from_row, key_from_row
from aitbc.storage.sql.tables import accounts, api_keys, principal_version

# What every change that can make a cached principal wrong runs in its transaction.
BUMP_PRINCIPAL_VERSION = (
    update(principal_version).where(principal_version.c.id == 1).values(version=principal_version.c.version + 1)
)


class SqlAccountStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def ensure_account(self, name: str, plan: Plan | None, now: datetime) -> tuple[Account, bool]:
        existing = await self.get_account_by_name(name)
        if existing is not None:
            return existing, False
        row: dict[str, Any] = {
            "id": new_account_id(),
            "name": name,
            "plan": (plan or Plan.FREE).value,
            "created_at": now,
            "event_seq": 0,
        }
        try:
            await self._db.write(rows_changed(insert(accounts).values(**row)))
        except IntegrityError:
            raced = await self.get_account_by_name(name)
            if raced is None:
                raise
            return raced, False
        return Account(id=row["id"], name=name, plan=plan or Plan.FREE, created_at=now), True

    async def get_account(self, account_id: str) -> Account | None:
        row = await self._db.read(first(select(accounts).where(accounts.c.id == account_id)))
        return account_from_row(row) if row else None

    async def get_account_by_name(self, name: str) -> Account | None:
        row = await self._db.read(first(select(accounts).where(accounts.c.name == name)))
        return account_from_row(row) if row else None

    async def list_accounts(self) -> list[Account]:
        rows = await self._db.read(every_row(select(accounts).order_by(accounts.c.name)))
        return [account_from_row(row) for row in rows]

    async def set_plan(self, account_id: str, plan: Plan) -> Account | None:
        change = update(accounts).where(accounts.c.id == account_id).values(plan=plan.value).returning(*accounts.c)

        def work(connection: Connection) -> Row[Any] | None:
            row = connection.execute(change).first()
            if row is not None:
                connection.execute(BUMP_PRINCIPAL_VERSION)
            return row

        row = await self._db.write(work)
        return account_from_row(row) if row else None

    async def create_key(
        self, key_id: str, account_id: str, name: str, role: Role, key_hash: str, prefix: str, now: datetime
    ) -> ApiKey:
        row = {
            "id": key_id,
            "account_id": account_id,
            "name": name,
            "role": role.value,
            "key_hash": key_hash,
            "prefix": prefix,
            "created_at": now,
        }
        created = await self._db.write(first(insert(api_keys).values(**row).returning(*api_keys.c)))
        assert created is not None
        return key_from_row(created)

    async def find_key(self, key_hash: str) -> tuple[ApiKey, Account] | None:
        query = (
            select(
                api_keys,
                accounts.c.name.label("account_name"),
                accounts.c.plan,
                accounts.c.created_at.label("account_created_at"),
            )
            .join(accounts, accounts.c.id == api_keys.c.account_id)
            .where(api_keys.c.key_hash == key_hash)
        )
        row = await self._db.read(first(query))
        if row is None:
            return None
        m = row._mapping
        account = Account(
            id=m["account_id"],
            name=m["account_name"],
            plan=Plan(m["plan"]),
            created_at=m["account_created_at"],
        )
        return key_from_row(row), account

    async def list_keys(self, account_id: str | None) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        if account_id is not None:
            query = query.where(api_keys.c.account_id == account_id)
        return [key_from_row(row) for row in await self._db.read(every_row(query))]

    async def revoke_key(self, key_id: str, now: datetime) -> ApiKey | None:
        revoke = (
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(*api_keys.c)
        )

        def work(connection: Connection) -> Row[Any] | None:
            row = connection.execute(revoke).first()
            if row is not None:
                connection.execute(BUMP_PRINCIPAL_VERSION)
                return row
            return connection.execute(select(api_keys).where(api_keys.c.id == key_id)).first()

        row = await self._db.write(work)
        return key_from_row(row) if row else None

    async def count_keys(self) -> int:
        return await self._db.read(count(select(func.count()).select_from(api_keys)))

    async def principals_version(self) -> int:
        query = select(principal_version.c.version).where(principal_version.c.id == 1)
        return await self._db.read(count(query))
