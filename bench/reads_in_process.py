"""In-process cost of the read hot path: a status GET and a list GET through the real app (httpx's ASGI
transport, no network, no server), with the SQL statements each one runs.

    .venv/bin/python bench/reads_in_process.py [--requests 500] [--history 2000] [--database-url postgresql://…]

One enterprise account (rate limits out of the way) with `--history` jobs, a CPU miner registered, and a
pending GPU job, so the status GET computes `waiting_for`. Requests run one after another: the figure is the
CPU and database time of one request in this process, not a throughput under load (the `compare` bench does
that).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event

from aitbc.api.app import create_app
from aitbc.domain.manifest import public_key_text
from aitbc.domain.plans import DEFAULT_PLAN_LIMITS, Plan, Role
from aitbc.protocol.jobs import SubmitJobRequest
from aitbc.protocol.miners import RegisterRequest
from aitbc.settings import Settings
from aitbc.wiring import Coordinator


@contextmanager
def statements(coordinator: Coordinator) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement.split()[0])

    database = coordinator.database
    engines = {id(e): e for e in database.engines}
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", record)


async def timed(http: httpx.AsyncClient, path: str, headers: dict[str, str], count: int) -> list[float]:
    took = []
    for _ in range(count):
        started = time.perf_counter()
        response = await http.get(path, headers=headers)
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return took


def line(name: str, took: list[float], seen: list[str]) -> str:
    ordered = sorted(took)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{name:<22} mean {statistics.mean(took):6.3f} ms  p50 {statistics.median(took):6.3f} ms  "
        f"p99 {p99:6.3f} ms  statements/request {len(seen)} {seen}"
    )


async def main(requests: int, history: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        limits = dict(DEFAULT_PLAN_LIMITS)
        limits[Plan.ENTERPRISE] = replace(limits[Plan.ENTERPRISE], max_concurrent_jobs=history + 10)
        settings = Settings(
            data_dir=Path(folder),
            database_url=database_url,
            run_reaper=False,
            run_results_sweeper=False,
            welcome_credit=Decimal(10**6),
            plan_limits=limits,
        )
        app = create_app(settings)
        async with LifespanManager(app) as manager:
            coordinator: Coordinator = app.state.coordinator
            coordinator.accounts.principals.check_seconds = 3600.0
            created = await coordinator.accounts.create_key("bench", Role.CLIENT, Plan.ENTERPRISE)
            client = await coordinator.accounts.authenticate(created.secret)
            farm = await coordinator.accounts.authenticate(
                (await coordinator.accounts.create_key("farm", Role.MINER, Plan.ENTERPRISE)).secret
            )
            plain = SubmitJobRequest.model_validate({"type": "command", "input": "echo"})
            for start in range(0, history, 500):
                await coordinator.jobs.submit_many(client, [(plain, None)] * min(500, history - start))
            gpu = SubmitJobRequest.model_validate(
                {"type": "command", "input": "x", "requirements": {"gpu_type": "a100"}}
            )
            pending = (await coordinator.jobs.submit(client, gpu)).job.id
            key = public_key_text(Ed25519PrivateKey.generate())
            await coordinator.miners.register(farm, RegisterRequest(name="cpu", runtimes=["command"], public_key=key))
            headers = {"X-Api-Key": created.secret}
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://aitbc.test") as http:
                for path in (f"/v1/jobs/{pending}", "/v1/jobs?limit=20", "/v1/jobs?limit=20&status=pending"):
                    await timed(http, path, headers, 20)  # warm
                print(f"{coordinator.database.dialect}, {history + 1} jobs of history, {requests} requests each")
                for name, path in (
                    ("GET /v1/jobs/{id}", f"/v1/jobs/{pending}"),
                    ("GET /v1/jobs?limit=20", "/v1/jobs?limit=20"),
                    ("  &status=pending", "/v1/jobs?limit=20&status=pending"),
                ):
                    with statements(coordinator) as seen:
                        await timed(http, path, headers, 1)
                    print(line(name, await timed(http, path, headers, requests), seen))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--history", type=int, default=2000)
    parser.add_argument("--database-url")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.history, arguments.database_url))
