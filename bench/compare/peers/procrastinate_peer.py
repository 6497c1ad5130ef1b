"""procrastinate: PostgreSQL jobs (LISTEN/NOTIFY wake-ups) with psycopg 3. Workers: this module run as a
script (App.run_worker with its defaults: concurrency 1)."""

from __future__ import annotations

import time

import procrastinate
from shared import POSTGRES_URL, async_done, async_probe

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=POSTGRES_URL))


@app.task(name="noop")
async def noop() -> None:
    await async_done()


@app.task(name="probe")
async def probe(sent: float) -> None:
    await async_probe(sent)


async def install() -> None:
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


class Client:
    asynchronous = True

    async def open(self) -> None:
        self.opened = app.open_async()
        await self.opened.__aenter__()

    async def submit_noop(self) -> None:
        await noop.defer_async()

    async def submit_probe(self) -> None:
        await probe.defer_async(sent=time.time())

    async def close(self) -> None:
        await self.opened.__aexit__(None, None, None)


def worker_command(bin_dir: str) -> list[str]:
    return [f"{bin_dir}/python", "-m", "procrastinate_peer"]


if __name__ == "__main__":
    app.run_worker()
