"""Soak: minutes of mixed load on one coordinator with real miners; does anything grow or stay behind?

    PYTHONPATH=. .venv/bin/python bench/soak.py [--minutes 30] [--miners 2] [--database-url postgresql://…]

Starts `aitbc serve` and `aitbc miner run --allow-command` processes (the test suite's `Stack`), then keeps
up a mix of load: submits (short scripts, some with an artifact), WebSocket watchers that connect, read a
while and drop (half with a close frame, half by just ending the connection), downloads of finished results
(some read to the end, some dropped part-way) and cancels. Every 10 s it reads the coordinator's
`GET /v1/admin/runtime` (RSS, open files, asyncio tasks, hub subscriptions; admin only).

It prints RSS at minute 5 (or a third of the way into a shorter run) and at the end of the load, and
whether open files, asyncio tasks and subscriptions went back to their idle values once the load stopped.
The idle values are read after a short warm-up round of the same load; open files are compared without
the connections clients hold open (keep-alive, long polls: theirs to close) and without the database
pool's connections and files (it keeps what it opened, up to its size); both are printed. Exits 1 if RSS
grew more than 10 % or a value did not go back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from bench.fault_loop import fresh_database
from tests.support.stack import Stack

SAMPLE_SECONDS = 10.0
SETTLE_SECONDS = 90.0
WARM_UP_SECONDS = 20.0
RSS_GROWTH_LIMIT = 0.10
POSTGRES_PORT = 5432


@dataclass
class Counts:
    submitted: int = 0
    canceled: int = 0
    downloads: int = 0
    downloads_dropped: int = 0
    watchers: int = 0
    events_seen: int = 0
    errors: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, stack: Stack, client_key: str, seed: int) -> None:
        self.stack = stack
        self.random = random.Random(seed)
        self.counts = Counts()
        self.finished: list[str] = []
        self.client = httpx.AsyncClient(base_url=stack.url, headers={"X-Api-Key": client_key}, timeout=30)
        self.admin = httpx.AsyncClient(base_url=stack.url, headers={"X-Api-Key": stack.admin_key}, timeout=30)
        self.client_key = client_key

    async def runtime(self) -> dict[str, Any]:
        answer = await self.admin.get("/v1/admin/runtime")
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        # Connections a client keeps open (keep-alive, long polls) are the clients' to close, not a leak:
        # what must go back to idle is every other descriptor (files, pipes, sockets in CLOSE_WAIT, …).
        # Likewise the database pool's connections: it keeps what it opened, up to its size.
        found["client_connections"], found["database_files"] = _connections(found["pid"], self.stack.port)
        found["own_files"] = found["open_files"] - found["client_connections"] - found["database_files"]
        return found

    # -- the load -----------------------------------------------------------------------------------

    async def load(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        workers = [
            self._submitter(deadline),
            *(self._watcher(deadline) for _ in range(4)),
            *(self._downloader(deadline) for _ in range(2)),
            self._canceller(deadline),
        ]
        await asyncio.gather(*workers)

    def _script(self) -> str:
        if self.random.random() < 0.3:
            return 'head -c 200000 /dev/urandom > "$AITBC_ARTIFACTS_DIR/noise.bin"; echo AITBC_PROGRESS=50; echo done'
        return f"echo AITBC_PROGRESS=50; sleep {self.random.choice(['0.1', '0.5', '1', '3'])}; echo done"

    async def _submitter(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            answer = await self.client.post("/v1/jobs", json={"type": "command", "input": self._script()})
            if answer.status_code == 201:
                self.counts.submitted += 1
            else:
                self.counts.errors.append(f"submit: {answer.status_code} {answer.text[:200]}")
            await asyncio.sleep(self.random.uniform(0.2, 0.8))

    async def _watcher(self, deadline: float) -> None:
        url = self.stack.url.replace("http://", "ws://") + "/v1/jobs/ws"
        while time.monotonic() < deadline:
            self.counts.watchers += 1
            try:
                connection = await websockets.connect(url, additional_headers={"X-Api-Key": self.client_key})
            except (OSError, websockets.WebSocketException) as error:
                self.counts.errors.append(f"watch: {error}")
                await asyncio.sleep(1)
                continue
            stay = time.monotonic() + self.random.uniform(0.5, 8)
            with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
                while (left := stay - time.monotonic()) > 0:
                    await asyncio.wait_for(connection.recv(), timeout=left)
                    self.counts.events_seen += 1
            if self.random.random() < 0.5:
                await connection.close()
            else:
                connection.transport.abort()  # gone without a close frame

    async def _finished_job(self) -> str | None:
        answer = await self.client.get("/v1/jobs", params={"status": "completed", "limit": 50})
        if answer.status_code != 200:
            self.counts.errors.append(f"list: {answer.status_code} {answer.text[:200]}")
            return None
        jobs = answer.json()["jobs"]
        return str(self.random.choice(jobs)["job_id"]) if jobs else None

    async def _downloader(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            job_id = await self._finished_job()
            if job_id is None:
                await asyncio.sleep(1)
                continue
            drop = self.random.random() < 0.3
            async with self.client.stream("GET", f"/v1/jobs/{job_id}/download") as answer:
                if answer.status_code != 200:
                    self.counts.errors.append(f"download: {answer.status_code}")
                async for _ in answer.aiter_bytes():
                    if drop:
                        break  # the connection is closed with the body half read
            self.counts.downloads += 1
            self.counts.downloads_dropped += drop
            await asyncio.sleep(self.random.uniform(0.2, 1.5))

    async def _canceller(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(self.random.uniform(1, 4))
            answer = await self.client.get("/v1/jobs", params={"status": "running", "limit": 20})
            if answer.status_code != 200 or not answer.json()["jobs"]:
                continue
            job_id = self.random.choice(answer.json()["jobs"])["job_id"]
            cancel = await self.client.post(f"/v1/jobs/{job_id}/cancel")
            if cancel.status_code >= 500:
                self.counts.errors.append(f"cancel: {cancel.status_code} {cancel.text[:200]}")
            self.counts.canceled += 1

    # -- measuring ----------------------------------------------------------------------------------

    async def sample_during(self, seconds: float, samples: list[tuple[float, dict[str, Any]]]) -> None:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            samples.append((elapsed, await self.runtime()))
            await asyncio.sleep(min(SAMPLE_SECONDS, max(0.0, seconds - elapsed)))
        samples.append((time.monotonic() - started, await self.runtime()))

    async def settle(self, idle: dict[str, Any]) -> dict[str, Any]:
        """Wait for the load's jobs to end, then for the counts to reach their idle values (or time out)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            busy = await self.client.get("/v1/jobs", params={"status": "running", "limit": 1})
            queued = await self.client.get("/v1/jobs", params={"status": "pending", "limit": 1})
            now = await self.runtime()
            if not busy.json()["jobs"] and not queued.json()["jobs"] and _at_idle(now, idle):
                return now
            await asyncio.sleep(1)
        return await self.runtime()

    async def idle_values(self) -> dict[str, Any]:
        """The median of a few samples: the miners' long polls come and go around a steady value."""
        samples = []
        for _ in range(5):
            samples.append(await self.runtime())
            await asyncio.sleep(1)
        return {key: statistics.median_low(s[key] for s in samples) for key in samples[0] if key != "pid"}


def _at_idle(now: dict[str, Any], idle: dict[str, Any]) -> bool:
    return (
        now["asyncio_tasks"] <= idle["asyncio_tasks"]
        and now["own_files"] <= idle["own_files"]
        and now["subscriptions"] == idle["subscriptions"]
    )


async def soak(stack: Stack, client_key: str, minutes: float, seed: int) -> int:
    run = Soak(stack, client_key, seed)
    try:
        print(f"warm-up: {WARM_UP_SECONDS:.0f} s of the same load, then idle values")
        await run.load(WARM_UP_SECONDS)
        await run.settle({"asyncio_tasks": 10**6, "own_files": 10**6, "subscriptions": 0})
        idle = await run.idle_values()
        idle_files = _open_file_kinds((await run.runtime())["pid"])
        print(f"idle: {_describe(idle)}")

        seconds = minutes * 60
        samples: list[tuple[float, dict[str, Any]]] = []
        print(f"load: {minutes:g} min")
        await asyncio.gather(run.load(seconds), run.sample_during(seconds, samples))
        reference_at = 300.0 if seconds >= 450 else seconds / 3  # minute 5, or a third of a short run
        reference = min(samples, key=lambda sample: abs(sample[0] - reference_at))
        end = samples[-1]
        growth = end[1]["rss_bytes"] / reference[1]["rss_bytes"] - 1
        peak = max(sample[1]["rss_bytes"] for sample in samples)
        after = await run.settle(idle)
        counts = run.counts
        print(
            f"done: {counts.submitted} submits, {counts.canceled} cancels, {counts.downloads} downloads "
            f"({counts.downloads_dropped} dropped part-way), {counts.watchers} watchers "
            f"({counts.events_seen} events), {len(counts.errors)} errors"
        )
        for error in counts.errors[:10]:
            print(f"  error: {error}")
        print(f"RSS at {reference[0] / 60:.1f} min: {_mib(reference[1]['rss_bytes'])}")
        print(f"RSS at {end[0] / 60:.1f} min (end of load): {_mib(end[1]['rss_bytes'])} ({growth:+.1%})")
        print(f"RSS peak during the load: {_mib(peak)}")
        by_minute = [sample for sample in samples if sample[0] % 60 < SAMPLE_SECONDS]
        print("RSS by minute: " + ", ".join(f"{at / 60:.0f}: {_mib(v['rss_bytes'])}" for at, v in by_minute))
        print(f"during the load: {_describe(end[1])}")
        print(f"after the load: {_describe(after)}")
        print(f"idle before:    {_describe(idle)}")
        now_files = _open_file_kinds(after["pid"])
        if now_files != idle_files:
            print(f"open files, more than idle: {dict(now_files - idle_files)}, fewer: {dict(idle_files - now_files)}")
        back, bounded = _at_idle(after, idle), growth <= RSS_GROWTH_LIMIT
        print(f"back to idle: {'yes' if back else 'NO'}; RSS within +10 %: {'yes' if bounded else 'NO'}")
        return 0 if back and bounded and not counts.errors else 1
    finally:
        await run.client.aclose()
        await run.admin.aclose()


def _connections(pid: int, port: int) -> tuple[int, int]:
    """How many of the process's descriptors are ESTABLISHED connections from clients to its `port`, and how
    many are connections to PostgreSQL (port 5432) or open files of the SQLite database (its pool's)."""
    clients, database = set(), set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local, remote = (int(end.rsplit(":", 1)[1], 16) for end in fields[1:3])
                if fields[3] == "01" and local == port:
                    clients.add(f"socket:[{fields[9]}]")
                elif fields[3] == "01" and remote == POSTGRES_PORT:
                    database.add(f"socket:[{fields[9]}]")
    counts = [0, 0]
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(descriptor)
            counts[0] += target in clients
            counts[1] += target in database or Path(target).name.startswith("aitbc.db")
    return counts[0], counts[1]


def _open_file_kinds(pid: int) -> Counter[str]:
    """What the coordinator's descriptors point at (sockets and pipes by kind, files by name)."""
    kinds: Counter[str] = Counter()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(descriptor)
            kinds[target.split(":[", 1)[0] if ":[" in target else target] += 1
    return kinds


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _describe(values: dict[str, Any]) -> str:
    return (
        f"RSS {_mib(values['rss_bytes'])}, {values['open_files']} open files "
        f"({values['client_connections']} client connections, {values['database_files']} of the database pool), "
        f"{values['asyncio_tasks']} asyncio tasks, {values['subscriptions']} subscriptions"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--miners", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL; default: SQLite")
    options = parser.parse_args()
    with fresh_database(options.database_url) as database_url:
        stack = Stack(Path(tempfile.mkdtemp(prefix="aitbc-soak-")), database_url=database_url)
        try:
            stack.start_server()
            admin = {"X-Api-Key": stack.admin_key}
            account = {"name": "soak", "role": "client", "plan": "enterprise"}
            made = httpx.post(f"{stack.url}/v1/admin/keys", json=account, headers=admin)
            made.raise_for_status()
            httpx.post(
                f"{stack.url}/v1/admin/credits", json={"account": "soak", "amount": "1000000"}, headers=admin
            ).raise_for_status()
            for index in range(options.miners):
                stack.start_miner(f"soak-{index}", "--allow-command", "--runtimes", "command")
            status = asyncio.run(soak(stack, made.json()["api_key"], options.minutes, options.seed))
        finally:
            stack.close()
        print(f"(logs in {stack.root})")
    sys.exit(status)


if __name__ == "__main__":
    main()
