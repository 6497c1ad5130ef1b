"""The SQL miner store: registrations and when each miner was last heard from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from aitbc.domain.accounts import Miner
from aitbc.domain.matching import Capabilities
from aitbc.domain.runtime_schemas import schemas_to_json
from aitbc.storage.sql.database import Database
from aitbc.storage.sql.one_statement import every_row, first, rows_changed
from aitbc.storage.sql.rows import miner_from_row
from aitbc.storage.sql.tables import miners


class SqlMinerStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def register(
        self,
        miner_id: str,
        account_id: str,
        name: str,
        capabilities: Capabilities,
        max_concurrency: int,
        public_key: str,
        now: datetime,
        region: str | None = None,
    ) -> Miner:
        values = {
            "runtimes": sorted(capabilities.runtimes),
            "models": sorted(capabilities.models),
            "gpus": [{"model": g.model, "vram_gb": g.vram_gb} for g in capabilities.gpus],
            "max_concurrency": max_concurrency,
            "public_key": public_key,
            "last_seen_at": now,
            "region": region,
            "schemas": schemas_to_json(capabilities.schemas_by_runtime()),
        }
        same = (miners.c.account_id == account_id, miners.c.name == name)

        def work(connection: Connection) -> Row[Any]:
            row = connection.execute(update(miners).where(*same).values(**values).returning(*miners.c)).first()
            if row is None:
                new = {"id": miner_id, "account_id": account_id, "name": name, "registered_at": now, **values}
                row = connection.execute(insert(miners).values(**new).returning(*miners.c)).one()
            return row

        return miner_from_row(await self._db.write(work))

    async def get_miner(self, miner_id: str) -> Miner | None:
        row = await self._db.read(first(select(miners).where(miners.c.id == miner_id)))
        return miner_from_row(row) if row else None

    async def get_miner_by_name(self, account_id: str, name: str) -> Miner | None:
        query = select(miners).where(miners.c.account_id == account_id, miners.c.name == name)
        row = await self._db.read(first(query))
        return miner_from_row(row) if row else None

    async def miners_named(self, name: str) -> list[Miner]:
        rows = await self._db.read(every_row(select(miners).where(miners.c.name == name).limit(100)))
        return [miner_from_row(row) for row in rows]

    async def touch(self, miner_id: str, now: datetime) -> None:
        await self._db.write(rows_changed(update(miners).where(miners.c.id == miner_id).values(last_seen_at=now)))

    async def seen_since(self, moment: datetime) -> list[Miner]:
        rows = await self._db.read(every_row(select(miners).where(miners.c.last_seen_at >= moment)))
        return [miner_from_row(row) for row in rows]
