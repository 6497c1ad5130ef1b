"""Export of a large history through a real coordinator: throughput and the coordinator's peak memory.

    .venv/bin/python bench/export_memory.py --jobs 100000 [--format csv]

Bulk-loads N finished jobs into a fresh SQLite data folder, starts `aitbc serve`, streams
`GET /v1/jobs/export` to /dev/null and prints rows per second and the server's peak RSS (VmHWM) before and
after: a streamed export keeps memory flat however many jobs there are.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, insert

from aitbc.domain.identifiers import new_job_id
from aitbc.domain.plans import Plan, Role
from aitbc.settings import Settings
from aitbc.storage.sql.tables import jobs
from aitbc.wiring import coordinator_session

AITBC = str(Path(sys.executable).with_name("aitbc"))


def _insert_jobs(rows: list[dict[str, Any]], connection: Connection) -> None:
    """Seed rows straight into the jobs table (one write unit of work)."""
    connection.execute(insert(jobs), rows)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(data_dir: Path, count: int) -> str:
    async with coordinator_session(Settings(data_dir=data_dir, run_reaper=False)) as coordinator:
        created = await coordinator.accounts.create_key("bench", Role.CLIENT, Plan.ENTERPRISE)
        start = datetime.now(UTC) - timedelta(days=1)
        batch = []
        for index in range(count):
            moment = start + timedelta(milliseconds=index)
            batch.append(
                {
                    "id": new_job_id(),
                    "account_id": created.account.id,
                    "type": "command",
                    "input": f"echo {index}",
                    "params": {"n": index},
                    "gpu_count": 1,
                    "priority": "normal",
                    "priority_rank": 1,
                    "timeout_seconds": 600,
                    "status": "completed",
                    "progress": 100,
                    "attempt": 1,
                    "max_attempts": 3,
                    "created_at": moment,
                    "updated_at": moment,
                    "started_at": moment,
                    "completed_at": moment,
                    "queue_expires_at": moment,
                    "results_state": "none",
                    "cost_units": 1000,
                    "billed_seconds": 1,
                }
            )
            if len(batch) == 5000:
                await coordinator.database.write(partial(_insert_jobs, batch))
                batch = []
        if batch:
            await coordinator.database.write(partial(_insert_jobs, batch))
        return created.secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--format", choices=["json", "csv"], default="json")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        started = time.perf_counter()
        key = asyncio.run(load(data_dir, options.jobs))
        print(f"loaded {options.jobs} jobs in {time.perf_counter() - started:.1f} s")
        port = free_port()
        server = subprocess.Popen(
            [AITBC, "serve", "--port", str(port), "--data-dir", str(data_dir), "--log-level", "warning"],
            env={"AITBC_CONFIG": str(Path(folder) / "profile.json")},
            stdout=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{url}/v1/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            before = peak_rss_mib(server.pid)
            started = time.perf_counter()
            size = 0
            with httpx.stream(
                "GET",
                f"{url}/v1/jobs/export",
                params={"format": options.format},
                headers={"X-Api-Key": key},
                timeout=600,
            ) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    size += len(chunk)
            seconds = time.perf_counter() - started
            after = peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(10)
    print(
        f"exported {options.jobs} jobs as {options.format}: {size / 1e6:.1f} MB in {seconds:.1f} s "
        f"({options.jobs / seconds:.0f} jobs/s)"
    )
    print(f"coordinator peak RSS: {before:.0f} MiB before the export, {after:.0f} MiB after")


if __name__ == "__main__":
    main()
