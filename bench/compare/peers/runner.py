"""Drive one peer through one workload and print one JSON line (run with the peers' own Python).

    bench/.venv-peers/bin/python bench/compare/peers/runner.py --peer arq --workload e2e --jobs 10000 --workers 4

e2e: M workers running, N no-op jobs submitted one per call by C concurrent clients; jobs/s from the first
submit to the last completion. drain: N jobs queued with no worker, then M workers start; jobs/s from the
first completion to the last. latency: one idle worker, P probes one after another; submit → the task's
first line, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import redis  # noqa: E402 - after the path that finds the peer modules
import shared  # noqa: E402

POSTGRES_PEERS = {"pgqueuer", "procrastinate"}


def fresh_postgres(create: bool = True) -> None:
    """A new, empty database for this run (dropped and made again); `create=False` only drops it."""
    import psycopg

    url = shared.POSTGRES_URL
    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            connection.execute(f'CREATE DATABASE "{name}"')


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class Bench:
    def __init__(self, peer: str, clients: int) -> None:
        self.peer = peer
        self.module: Any = importlib.import_module(f"{peer}_peer")
        self.redis = redis.Redis.from_url(shared.REDIS_URL)
        self.redis.flushdb()  # the bench's own database number (BENCH_REDIS_URL)
        if peer in POSTGRES_PEERS:
            fresh_postgres()
            asyncio.run(self.module.install())
        self.clients = clients
        self.workers: list[subprocess.Popen[bytes]] = []
        self.pool = ThreadPoolExecutor(max_workers=clients)

    def start_workers(self, count: int, total: int) -> None:
        environment = {**os.environ, "BENCH_TOTAL": str(total), "PYTHONPATH": str(HERE)}
        for _ in range(count):
            self.workers.append(
                subprocess.Popen(
                    self.module.worker_command(str(Path(sys.executable).parent)),
                    cwd=HERE,
                    env=environment,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
        self.workers = []

    async def call(self, client: Any, name: str) -> None:
        method = getattr(client, name)
        if client.asynchronous:
            await method()
        else:
            await asyncio.get_running_loop().run_in_executor(self.pool, method)

    async def open(self) -> Any:
        client = self.module.Client()
        await self.call(client, "open")
        return client

    def wait_probe(self, timeout: float) -> float:
        found = self.redis.blpop([shared.PROBES], timeout=timeout)
        if found is None:
            raise TimeoutError(f"{self.peer}: a probe job did not run within {timeout} s")
        return float(found[1])

    async def warm(self, client: Any) -> None:
        """One probe through the workers, so that their start-up is not measured."""
        await self.call(client, "submit_probe")
        self.wait_probe(120)

    async def submit_all(self, client: Any, jobs: int) -> None:
        semaphore = asyncio.Semaphore(self.clients)

        async def one() -> None:
            async with semaphore:
                await self.call(client, "submit_noop")

        await asyncio.gather(*(one() for _ in range(jobs)))

    def wait_last(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while (last := self.redis.get(shared.LAST)) is None:
            if time.monotonic() > deadline:
                done = int(self.redis.get(shared.DONE) or 0)
                raise TimeoutError(f"{self.peer}: {done} jobs done after {timeout} s")
            time.sleep(0.02)
        return float(last)

    async def e2e(self, jobs: int, workers: int) -> dict[str, float]:
        self.start_workers(workers, jobs)
        client = await self.open()
        await self.warm(client)
        started = time.time()
        await self.submit_all(client, jobs)
        submitted = time.time()
        last = self.wait_last(max(120.0, jobs / 20))
        await self.call(client, "close")
        return {"jobs_per_second": jobs / (last - started), "submits_per_second": jobs / (submitted - started)}

    async def drain(self, jobs: int, workers: int) -> dict[str, float]:
        client = await self.open()
        await self.submit_all(client, jobs)
        await self.call(client, "close")
        self.start_workers(workers, jobs)
        last = self.wait_last(max(120.0, jobs / 20))
        first = float(self.redis.get(shared.FIRST) or 0)
        return {"jobs_per_second": (jobs - 1) / (last - first)}

    async def latency(self, probes: int) -> dict[str, float]:
        self.start_workers(1, 0)
        client = await self.open()
        await self.warm(client)
        delays = []
        gaps = random.Random(5)
        for _ in range(probes):
            await asyncio.sleep(gaps.uniform(0.01, 0.25))  # idle a while, as between real submits (a poller's
            # phase is not what is measured)
            await self.call(client, "submit_probe")
            delays.append(self.wait_probe(30) * 1000)
        await self.call(client, "close")
        return {
            "p50_ms": statistics.median(delays),
            "p99_ms": percentile(delays, 0.99),
            "samples": float(len(delays)),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, choices=["arq", "celery", "rq", "pgqueuer", "procrastinate"])
    parser.add_argument("--workload", required=True, choices=["e2e", "drain", "latency"])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--probes", type=int, default=200)
    options = parser.parse_args()
    bench = Bench(options.peer, options.clients)
    try:
        if options.workload == "e2e":
            found = asyncio.run(bench.e2e(options.jobs, options.workers))
        elif options.workload == "drain":
            found = asyncio.run(bench.drain(options.jobs, options.workers))
        else:
            found = asyncio.run(bench.latency(options.probes))
    finally:
        bench.stop_workers()
        bench.pool.shutdown()
        if options.peer in POSTGRES_PEERS:
            fresh_postgres(create=False)
    print(json.dumps({"peer": options.peer, "workload": options.workload, **found}))


if __name__ == "__main__":
    main()
