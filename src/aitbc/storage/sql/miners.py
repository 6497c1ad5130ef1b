"""The SQL miner store: registrations and when each miner was last heard from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update

from aitbc.domain.accounts import Miner
from aitbc.domain.matching import Capabilities
from aitbc.storage.sql.database import Database
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
    ) -> Miner:
        values = {
            "runtimes": sorted(capabilities.runtimes),
            "models": sorted(capabilities.models),
            "gpus": [{"model": g.model, "vram_gb": g.vram_gb} for g in capabilities.gpus],
            "max_concurrency": max_concurrency,
            "public_key": public_key,
            "last_seen_at": now,
        }
        same = (miners.c.account_id == account_id, miners.c.name == name)
        async with self._db.write() as connection:
            row = (await connection.execute(update(miners).where(*same).values(**values).returning(*miners.c))).first()
            if row is None:
                new = {"id": miner_id, "account_id": account_id, "name": name, "registered_at": now, **values}
                row = (await connection.execute(insert(miners).values(**new).returning(*miners.c))).one()
        return miner_from_row(row)

    async def get_miner(self, miner_id: str) -> Miner | None:
        async with self._db.read() as connection:
            row = (await connection.execute(select(miners).where(miners.c.id == miner_id))).first()
        return miner_from_row(row) if row else None

    async def get_miner_by_name(self, account_id: str, name: str) -> Miner | None:
        query = select(miners).where(miners.c.account_id == account_id, miners.c.name == name)
        async with self._db.read() as connection:
            row = (await connection.execute(query)).first()
        return miner_from_row(row) if row else None

    async def touch(self, miner_id: str, now: datetime) -> None:
        async with self._db.write() as connection:
            await connection.execute(update(miners).where(miners.c.id == miner_id).values(last_seen_at=now))

    async def seen_since(self, moment: datetime) -> list[Miner]:
        async with self._db.read() as connection:
            rows = (await connection.execute(select(miners).where(miners.c.last_seen_at >= moment))).all()
        return [miner_from_row(row) for row in rows]
