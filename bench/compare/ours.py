"""Our side of each workload, through the HTTP API of a real `aitbc serve` only (no in-process shortcut).

Submits go one per request from `clients` concurrent connections, round-robin over the bench's accounts.
No-op miners are separate processes (`noop_miner.py`), as the peers' workers are.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import websockets
from bench.compare.coordinator import AITBC, Ours
from bench.compare.wrk import Load, Result, run_wrk
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.manifest import public_key_text

HERE = Path(__file__).resolve().parent
EMBEDDING_TEXT = "a cat sits on the mat"
NOOP_JOB = {"type": "command", "input": "true"}
# The submits under wrk: a type no miner offers, so the jobs they queue leave the miners (and their queue) alone;
# with a queue timeout, as a client queueing such a job must give (without one the submit is refused).
SUBMIT_POST_JOB = {"type": "bench-submit", "input": "true", "queue_timeout_seconds": 86400}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Submitted:
    job_id: str
    key: str


async def submit_all(ours: Ours, jobs: int, clients: int) -> list[Submitted]:
    """`jobs` submits, one per request, from `clients` concurrent connections, round-robin over the accounts."""
    keys = [account.key for account in ours.clients]
    semaphore = asyncio.Semaphore(clients)
    found: list[Submitted] = []
    nonce = os.urandom(4).hex()
    async with httpx.AsyncClient(base_url=ours.url, limits=httpx.Limits(max_connections=clients), timeout=60) as client:

        async def one(index: int) -> None:
            key = keys[index % len(keys)]
            # An idempotency key makes a retry after a dropped connection safe: the server answers it with the
            # job the first attempt made, if it made one.
            headers = {"X-Api-Key": key, "Idempotency-Key": f"bench-{nonce}-{index}"}
            async with semaphore:
                for attempt in range(3):
                    try:
                        answer = await client.post("/v1/jobs", json=NOOP_JOB, headers=headers)
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
            if answer.status_code != 201:
                raise RuntimeError(f"submit answered {answer.status_code}: {answer.text}")
            found.append(Submitted(answer.json()["job_id"], key))

        await asyncio.gather(*(one(index) for index in range(jobs)))
    return found


class NoopMiners:
    """M no-op miner processes; they exit when the stop file exists and the queue is empty."""

    def __init__(self, ours: Ours, count: int, label: str) -> None:
        self.stop_file = ours.root / f"stop-{label}-{ours.backend}"
        self.stop_file.unlink(missing_ok=True)
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "noop_miner.py"),
                    "--url",
                    ours.url,
                    "--key",
                    ours.miner_key,
                    "--name",
                    f"noop-{label}-{index}",
                    "--stop-file",
                    str(self.stop_file),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(count)
        ]
        for process in self.processes:  # registered and about to claim
            assert process.stdout is not None
            line = process.stdout.readline()
            if "ready" not in line:
                raise RuntimeError(f"a no-op miner did not start (exit {process.wait()})")

    def kill(self) -> None:
        """On an error: no miner process outlives the bench."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)

    def finish(self) -> tuple[int, float, float]:
        """Stop once the queue is empty: jobs done, first and last completion (time.time())."""
        self.stop_file.touch()
        reports = []
        for process in self.processes:
            out, _ = process.communicate(timeout=3600)
            if process.returncode != 0:
                raise RuntimeError(f"a no-op miner exited {process.returncode}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        done = sum(int(report["done"]) for report in reports)
        firsts = [report["first"] for report in reports if report["done"]]
        return done, min(firsts, default=0.0), max(report["last"] for report in reports)


def e2e(ours: Ours, jobs: int, miners: int, clients: int) -> tuple[float, float, list[Submitted]]:
    """jobs/s from the first submit to the last completion, and the submit rate alone."""
    crew = NoopMiners(ours, miners, "e2e")
    try:
        started = time.time()
        submitted = asyncio.run(submit_all(ours, jobs, clients))
        submit_seconds = time.time() - started
        done, _, last = crew.finish()
    finally:
        crew.kill()
    if done != jobs:
        raise RuntimeError(f"e2e: {done} of {jobs} jobs finished")
    return jobs / (last - started), jobs / submit_seconds, submitted


def drain(ours: Ours, jobs: int, miners: int, clients: int) -> tuple[float, list[Submitted]]:
    """A backlog of `jobs`, then M miners: jobs/s from the first completion to the last."""
    submitted = asyncio.run(submit_all(ours, jobs, clients))
    crew = NoopMiners(ours, miners, "drain")
    try:
        done, first, last = crew.finish()
    finally:
        crew.kill()
    if done != jobs:
        raise RuntimeError(f"drain: {done} of {jobs} jobs finished")
    return (jobs - 1) / (last - first), submitted


async def _latency(ours: Ours, probes: int) -> list[float]:
    key = ours.clients[0].key
    async with (
        httpx.AsyncClient(base_url=ours.url, headers={"X-Api-Key": key}, timeout=30) as client,
        httpx.AsyncClient(base_url=ours.url, headers={"X-Api-Key": ours.miner_key}, timeout=30) as miner,
    ):
        registered = await miner.post(
            "/v1/miners/register",
            json={
                "name": "latency",
                "runtimes": ["command"],
                "public_key": public_key_text(Ed25519PrivateKey.generate()),
            },
        )
        miner_id = registered.json()["miner_id"]
        delays = []
        gaps = random.Random(5)
        for index in range(probes + 5):  # the first five warm the connections
            waiting = asyncio.create_task(
                miner.post(f"/v1/miners/{miner_id}/claim", json={"max_jobs": 1, "wait_seconds": 10})
            )
            await asyncio.sleep(gaps.uniform(0.01, 0.25))  # idle a while, as between real submits (a poller's
            # phase is not what is measured)
            sent = time.perf_counter()
            (await client.post("/v1/jobs", json=NOOP_JOB)).raise_for_status()
            claimed = (await waiting).json()["jobs"]
            returned = time.perf_counter()
            if not claimed:
                raise RuntimeError("a held claim came back empty after a submit")
            if index >= 5:
                delays.append((returned - sent) * 1000)
            for job in claimed:
                base = f"/v1/miners/{miner_id}/jobs/{job['job_id']}"
                await miner.post(f"{base}/start", json={"lease_id": job["lease_id"]})
                await miner.post(f"{base}/complete", json={"lease_id": job["lease_id"]})
        return delays


def latency(ours: Ours, probes: int) -> list[float]:
    """Submit → an idle miner's held (long-poll) claim returns the job, in ms, one job at a time."""
    return asyncio.run(_latency(ours, probes))


def reads(ours: Ours, submitted: list[Submitted], load: Load) -> dict[str, Result]:
    """Status GETs over many jobs of many accounts, list GETs over every account, and submits (POST /v1/jobs,
    one no-op job each, round-robin over the accounts), under wrk."""
    sample = random.Random(7).sample(submitted, min(len(submitted), 5000))
    status_targets = [(f"/v1/jobs/{job.job_id}", job.key) for job in sample]
    list_targets = [("/v1/jobs?limit=20", account.key) for account in ours.clients]
    submit_targets = [("/v1/jobs", account.key) for account in ours.clients]
    return {
        "status GET": run_wrk(ours.url, status_targets, load),
        "list GET": run_wrk(ours.url, list_targets, load),
        "submit POST": run_wrk(ours.url, submit_targets, load, body=json.dumps(SUBMIT_POST_JOB)),
    }


class RealMiner:
    """A real `aitbc miner run` (sandbox and all), warm and idle, long-polling for the next job."""

    def __init__(self, ours: Ours, runtimes: str) -> None:
        self.log = (ours.root / f"miner-{ours.backend}.log").open("ab")
        environment = {
            **os.environ,
            "AITBC_URL": ours.url,
            "AITBC_API_KEY": ours.miner_key,
            "AITBC_CONFIG": str(ours.root / "profile.json"),
            "OMP_NUM_THREADS": "1",  # torch's spinning threads would measure the machine's load
        }
        self.command = [
            AITBC,
            "miner",
            "run",
            "--name",
            f"round-trip-{ours.backend}",
            "--work-dir",
            str(ours.root / f"miner-{ours.backend}"),
            "--gpus",
            "none",
            "--allow-command",
            "--runtimes",
            runtimes,
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(self.command, env=environment, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


async def _round_trips(ours: Ours, body: dict[str, object], runs: int, warm_timeout: float) -> list[float]:
    key = ours.clients[-1].key
    socket_url = ours.url.replace("http", "ws", 1) + "/v1/jobs/ws"
    async with (
        httpx.AsyncClient(base_url=ours.url, headers={"X-Api-Key": key}, timeout=30) as client,
        websockets.connect(socket_url, additional_headers={"X-Api-Key": key}, open_timeout=10) as events,
    ):

        async def one(timeout: float) -> float:
            started = time.perf_counter()
            answer = await client.post("/v1/jobs", json=body)
            if answer.status_code != 201:
                raise RuntimeError(f"submit answered {answer.status_code}: {answer.text}")
            job_id = answer.json()["job_id"]
            async with asyncio.timeout(timeout):
                async for message in events:
                    event = json.loads(message)
                    if event.get("job_id") != job_id:
                        continue
                    if event.get("status") == "completed":
                        return (time.perf_counter() - started) * 1000
                    if event.get("status") in {"failed", "canceled", "expired"}:
                        raise RuntimeError(f"round trip job {job_id} ended {event['status']}: {event}")
            raise RuntimeError("the event stream closed")

        await one(warm_timeout)  # the miner's first job: sandbox and model warm-up
        trips = []
        for _ in range(runs):
            await asyncio.sleep(0.05)  # idle between jobs, its claim held
            trips.append(await one(60))
        return trips


def round_trips(ours: Ours, body: dict[str, object], runs: int) -> list[float]:
    """Submit → completed (seen on the client's event stream), ms, one job at a time on a warm, idle miner."""
    return asyncio.run(_round_trips(ours, body, runs, warm_timeout=300))


def command_own_time(runs: int) -> list[float]:
    """The work itself of the trivial command job: `sh -c 'echo hi'`, no sandbox, ms."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["sh", "-c", "echo hi"], stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


def embedding_own_time(runs: int) -> list[float]:
    """The work itself of the embedding job: the packaged model's `encode` of one text, warm, in a process of
    its own with one math thread (as the miner runs it), ms."""
    done = subprocess.run(
        [sys.executable, str(HERE / "embedding_direct.py"), "--runs", str(runs)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(value) for value in json.loads(done.stdout.strip().splitlines()[-1])]


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), percentile(values, 0.99)
