"""How long a submit on one coordinator replica takes to wake a claim long poll held on another, and a cancel
to reach a miner's heartbeat held on another, through PostgreSQL LISTEN/NOTIFY. (tests/test_replicas.py checks
that they arrive; this measures how fast.)

    PYTHONPATH=. .venv/bin/python bench/replica_wakeup.py [--runs 20] [--admin-url postgresql+psycopg://…/postgres]

Two replicas in one process over a fresh database that is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text
from tests.helpers import job_request, principal, register_miner

from aitbc.domain.plans import Role
from aitbc.protocol.miners import FailRequest
from aitbc.settings import Settings
from aitbc.wiring import Coordinator, open_coordinator


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


async def measure(a: Coordinator, b: Coordinator, runs: int) -> tuple[list[float], list[float]]:
    alice = await principal(a, "alice", Role.CLIENT)
    owner = await principal(b, "farm", Role.MINER)
    miner = await register_miner(b, owner)
    claims, cancels = [], []
    for _ in range(runs):
        waiting = asyncio.create_task(b.claiming.claim(owner, miner, 1, 60))
        await until(lambda: b.hub.claimers_waiting == 1)
        started = time.perf_counter()
        job = (await a.jobs.submit(alice, job_request())).job
        (assignment,) = await waiting
        claims.append(time.perf_counter() - started)

        held = asyncio.create_task(b.miners.heartbeat(owner, miner, [assignment.lease_id], wait_seconds=60))
        await until(lambda: b.hub.heartbeats_waiting(miner) == 1)
        started = time.perf_counter()
        await a.jobs.cancel(alice, job.id)
        (state,) = await held
        assert state.cancel
        cancels.append(time.perf_counter() - started)
        await b.finishing.fail(owner, miner, job.id, FailRequest(lease_id=assignment.lease_id, message="canceled"))
    return claims, cancels


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return f"{name}: median {statistics.median(ms):.1f} ms, worst {ms[-1]:.1f} ms over {len(ms)} runs"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    options = parser.parse_args()
    name = f"aitbc_bench_{secrets.token_hex(4)}"
    admin = create_engine(options.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = options.admin_url.rsplit("/", 1)[0].replace("+psycopg", "") + f"/{name}"
    replicas: list[Coordinator] = []
    try:
        root = Path(tempfile.mkdtemp())
        for replica in ("a", "b"):
            opened = await open_coordinator(Settings(data_dir=root / replica, database_url=url, run_reaper=False))
            replicas.append(opened)
            await opened.start_relay()
            assert opened.relay is not None and await opened.relay.listener_healthy()
        claims, cancels = await measure(replicas[0], replicas[1], options.runs)
        print(summary("submit on a → claim on b woken", claims))
        print(summary("cancel on a → heartbeat on b answered", cancels))
    finally:
        for opened in replicas:
            await opened.close()
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
