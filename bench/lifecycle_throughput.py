"""Throughput of the job lifecycle through a real coordinator process: submit, claim, start, complete.

    .venv/bin/python bench/lifecycle_throughput.py --jobs 500 --miners 4 [--database-url postgresql://…]

Starts `aitbc serve` on a free port with a temporary data folder, then drives it over HTTP and prints
jobs per second for each phase and the latency of a claim long-poll woken by a submit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.manifest import public_key_text

AITBC = str(Path(sys.executable).with_name("aitbc"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def key(data_dir: Path, name: str, role: str, database: list[str]) -> str:
    """An enterprise account (its rate limit is not what is measured) with credits for every job's hold."""
    made = subprocess.run(
        [AITBC, "admin", "keys", "create", "--name", name, "--role", role, "--plan", "enterprise", *database, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    subprocess.run(
        [AITBC, "admin", "credits", "grant", "--account", name, "--amount", "100000", *database],
        capture_output=True,
        check=True,
    )
    return str(json.loads(made.stdout)["api_key"])


async def run(jobs: int, miners: int, url: str, client_key: str, miner_key: str) -> None:
    limits = httpx.Limits(max_connections=64)
    async with (
        httpx.AsyncClient(base_url=url, headers={"X-Api-Key": client_key}, limits=limits) as client,
        httpx.AsyncClient(base_url=url, headers={"X-Api-Key": miner_key}, limits=limits, timeout=60) as miner,
    ):
        ids = []
        for index in range(miners):
            registered = await miner.post(
                "/v1/miners/register",
                json={
                    "name": f"bench-{index}",
                    "runtimes": ["command"],
                    "public_key": public_key_text(Ed25519PrivateKey.generate()),
                },
            )
            ids.append(registered.json()["miner_id"])

        started = time.perf_counter()
        semaphore = asyncio.Semaphore(32)

        async def submit(i: int) -> None:
            async with semaphore:
                response = await client.post("/v1/jobs", json={"type": "command", "input": f"echo {i}"})
                response.raise_for_status()

        await asyncio.gather(*(submit(i) for i in range(jobs)))
        submit_seconds = time.perf_counter() - started

        done = 0
        started = time.perf_counter()

        async def work(miner_id: str) -> None:
            nonlocal done
            while done < jobs:
                claimed = (
                    await miner.post(f"/v1/miners/{miner_id}/claim", json={"max_jobs": 8, "wait_seconds": 0})
                ).json()["jobs"]
                if not claimed:
                    return
                for job in claimed:
                    base = f"/v1/miners/{miner_id}/jobs/{job['job_id']}"
                    await miner.post(f"{base}/start", json={"lease_id": job["lease_id"]})
                    (await miner.post(f"{base}/complete", json={"lease_id": job["lease_id"]})).raise_for_status()
                    done += 1

        await asyncio.gather(*(work(m) for m in ids))
        run_seconds = time.perf_counter() - started

        wakeups = []
        for _ in range(20):
            waiting = asyncio.create_task(
                miner.post(f"/v1/miners/{ids[0]}/claim", json={"max_jobs": 1, "wait_seconds": 10})
            )
            await asyncio.sleep(0.05)
            sent = time.perf_counter()
            await client.post("/v1/jobs", json={"type": "command", "input": "echo wake"})
            await waiting
            wakeups.append((time.perf_counter() - sent) * 1000)

    print(f"submitted {jobs} jobs in {submit_seconds:.2f} s: {jobs / submit_seconds:.0f} jobs/s")
    print(
        f"claimed+started+completed {done} jobs with {miners} miners in {run_seconds:.2f} s: "
        f"{done / run_seconds:.0f} jobs/s"
    )
    print(f"long-poll claim woken by a submit: median {statistics.median(wakeups):.1f} ms, max {max(wakeups):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--miners", type=int, default=4)
    parser.add_argument("--database-url", default=None)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        database = ["--database-url", options.database_url] if options.database_url else ["--data-dir", str(data_dir)]
        client_key = key(data_dir, "bench-client", "client", database)
        miner_key = key(data_dir, "bench-farm", "miner", database)
        port = free_port()
        server = subprocess.Popen(
            [AITBC, "serve", "--port", str(port), "--log-level", "warning", *database],
            env={"AITBC_CONFIG": str(Path(folder) / "profile.json"), "PATH": ""},
            stdout=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            print(f"coordinator: {'PostgreSQL' if options.database_url else 'SQLite'}, {options.miners} miners")
            asyncio.run(run(options.jobs, options.miners, url, client_key, miner_key))
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
