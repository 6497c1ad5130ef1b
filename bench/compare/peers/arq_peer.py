"""arq: asyncio jobs on Redis. Workers: `arq arq_peer.WorkerSettings` (its defaults: max_jobs 10)."""

from __future__ import annotations

import time
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from shared import REDIS_URL, async_done, async_probe

SETTINGS = RedisSettings.from_dsn(REDIS_URL)


async def noop(ctx: dict[str, Any]) -> None:
    await async_done()


async def probe(ctx: dict[str, Any], sent: float) -> None:
    await async_probe(sent)


class WorkerSettings:
    functions = [noop, probe]
    redis_settings = SETTINGS
    keep_result = 0
    log_results = False


class Client:
    asynchronous = True

    async def open(self) -> None:
        self.pool = await create_pool(SETTINGS)

    async def submit_noop(self) -> None:
        await self.pool.enqueue_job("noop")

    async def submit_probe(self) -> None:
        await self.pool.enqueue_job("probe", time.time())

    async def close(self) -> None:
        await self.pool.aclose()


def worker_command(bin_dir: str) -> list[str]:
    return [f"{bin_dir}/arq", "arq_peer.WorkerSettings"]
