"""pgqueuer: PostgreSQL jobs (LISTEN/NOTIFY wake-ups). Workers: this module run as a script (PgQueuer.run with
its defaults: batch_size 10)."""

from __future__ import annotations

import asyncio
import struct
import time

import asyncpg
from pgqueuer import Job, PgQueuer, Queries
from pgqueuer.db import AsyncpgDriver
from shared import POSTGRES_URL, async_done, async_probe


async def install() -> None:
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await Queries(AsyncpgDriver(connection)).install()
    finally:
        await connection.close()


class Client:
    asynchronous = True

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(POSTGRES_URL, min_size=4, max_size=32)
        from pgqueuer.db import AsyncpgPoolDriver

        self.queries = Queries(AsyncpgPoolDriver(self.pool))

    async def submit_noop(self) -> None:
        await self.queries.enqueue("noop", None)

    async def submit_probe(self) -> None:
        await self.queries.enqueue("probe", struct.pack("d", time.time()))

    async def close(self) -> None:
        await self.pool.close()


async def work() -> None:
    connection = await asyncpg.connect(POSTGRES_URL)
    queuer = PgQueuer(AsyncpgDriver(connection))

    @queuer.entrypoint("noop")
    async def noop(job: Job) -> None:
        await async_done()

    @queuer.entrypoint("probe")
    async def probe(job: Job) -> None:
        await async_probe(struct.unpack("d", job.payload or b"")[0])

    await queuer.run()


def worker_command(bin_dir: str) -> list[str]:
    return [f"{bin_dir}/python", "-m", "pgqueuer_peer"]


if __name__ == "__main__":
    asyncio.run(work())
