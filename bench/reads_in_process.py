"""In-process cost of the API hot path: status GET, list GET, submit, and a miner's claim and complete, through
the real app (called as ASGI by a minimal client: no network, no server, next to no client cost), with the SQL
statements each one runs and the
split of each request's time between the stores (`store ms`: time inside store calls, the database's share)
and everything else (`api ms`: routing, auth, validation, services and serialization).

    .venv/bin/python bench/reads_in_process.py [--requests 500] [--history 2000] [--database-url postgresql://…]
        [--only status,list,pending,submit,claim,complete,batch]

One enterprise account (rate limits out of the way) with `--history` jobs, a CPU miner registered, and a
pending GPU job, so the status GET computes `waiting_for`. Requests run one after another: the figure is the
CPU and database time of one request in this process, not a throughput under load (the `compare` bench does
that). `submit` posts `--requests` jobs; `claim` claims `--requests` jobs one per call (and starts them),
`complete` completes half of those one per call and `batch` the rest 16 per call (`/jobs/complete`; its figures
are per call).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from json import dumps
from pathlib import Path
from typing import Any

from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.api.app import create_app
from aitbc.domain.manifest import public_key_text
from aitbc.domain.plans import DEFAULT_PLAN_LIMITS, Plan, Role
from aitbc.protocol.jobs import SubmitJobRequest
from aitbc.protocol.miners import RegisterRequest
from aitbc.settings import Settings
from aitbc.wiring import Coordinator

ROUTES = ("status", "list", "pending", "submit", "claim", "complete", "batch")
BATCH = 16


@contextmanager
def statements(coordinator: Coordinator) -> Iterator[list[str]]:
    """The first word of each SQL statement the coordinator runs meanwhile."""
    with coordinator.database.observed() as seen:
        first_words: list[str] = []
        yield first_words
        first_words.extend(statement.split()[0] for statement in seen)


@dataclass
class StoreClock:
    """Time spent inside store calls (the outermost one only: a store calling another counts once): wall time,
    and CPU time of this (the event loop's) thread, which requests run one at a time leave to the store alone."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    depth: int = 0

    def timed(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(call)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.depth += 1
            started, cpu_started = time.perf_counter(), time.thread_time()
            try:
                return await call(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.seconds += time.perf_counter() - started
                    self.cpu_seconds += time.thread_time() - cpu_started

        return wrapper


def stores_of(coordinator: Coordinator) -> list[object]:
    """Every store object the services hold (found two attributes deep), by identity."""
    found: dict[int, object] = {}
    seen: set[int] = set()
    frontier: list[object] = [coordinator]
    for _ in range(3):
        following: list[object] = []
        for holder in frontier:
            for value in vars(holder).values() if hasattr(holder, "__dict__") else ():
                if id(value) in seen or not hasattr(value, "__dict__"):
                    continue
                seen.add(id(value))
                module = type(value).__module__
                if module.startswith("aitbc.storage."):
                    found[id(value)] = value
                elif module.startswith("aitbc."):
                    following.append(value)
        frontier = following
    return list(found.values())


def clock_stores(coordinator: Coordinator) -> StoreClock:
    clock = StoreClock()
    for store in stores_of(coordinator):
        for name, _member in inspect.getmembers(type(store), inspect.iscoroutinefunction):
            if not name.startswith("_"):
                setattr(store, name, clock.timed(getattr(store, name)))
    return clock


def line(name: str, took: list[float], cpu_ms: float, clock: StoreClock, seen: list[str]) -> str:
    """Wall: mean, p50, p99, and the store's part of the mean; loop CPU: per request, and the store's part
    (the rest, `api`, is routing, auth, validation, services and serialization)."""
    ordered = sorted(took)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    count = len(took)
    store_cpu = clock.cpu_seconds * 1000 / count
    return (
        f"{name:<20} wall mean {statistics.mean(took):6.3f} p50 {statistics.median(took):6.3f} p99 {p99:6.3f} "
        f"store {clock.seconds * 1000 / count:6.3f} | loop CPU {cpu_ms / count:6.3f} store {store_cpu:6.3f} "
        f"api {(cpu_ms / count) - store_cpu:6.3f} ms | SQL {len(seen)}: {' '.join(seen)}"
    )


@dataclass
class Answer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"{self.status_code}: {self.text}")


class AsgiClient:
    """Calls the app as a server would (one `http` scope, the body in one message), and nothing more: httpx's
    ASGI transport costs about as much CPU per request as the app's routing does."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def get(self, path: str, headers: dict[str, str]) -> Answer:
        return await self.request("GET", path, headers, b"")

    async def post(self, path: str, json: Any, headers: dict[str, str]) -> Answer:
        body = dumps(json).encode()
        return await self.request("POST", path, {**headers, "content-type": "application/json"}, body)

    async def request(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        path, _, query = target.partition("?")
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        raw += [(b"host", b"aitbc.test"), (b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": raw,
            "client": ("127.0.0.1", 50000),
            "server": ("aitbc.test", 80),
        }
        sent = False
        status = 0
        parts: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never hangs up
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return Answer(status, b"".join(parts))


Call = Callable[[int], Awaitable[Answer]]


async def measure(name: str, call: Call, count: int, coordinator: Coordinator, clock: StoreClock) -> None:
    """`call(0)` warms up (a first submit reads the estimate the next ones reuse), `call(1)` shows the SQL,
    `call(2)` to `call(count + 1)` are timed."""
    (await call(0)).raise_for_status()
    with statements(coordinator) as seen:
        (await call(1)).raise_for_status()
    clock.seconds = clock.cpu_seconds = 0.0
    took = []
    cpu_started = time.thread_time()
    for index in range(2, count + 2):
        started = time.perf_counter()
        response = await call(index)
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code in (200, 201), response.text
    print(line(name, took, (time.thread_time() - cpu_started) * 1000, clock, seen))


async def main(requests: int, history: int, database_url: str | None, only: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        limits = dict(DEFAULT_PLAN_LIMITS)
        limits[Plan.ENTERPRISE] = replace(limits[Plan.ENTERPRISE], max_concurrent_jobs=history + 3 * requests + 100)
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
            farm_key = (await coordinator.accounts.create_key("farm", Role.MINER, Plan.ENTERPRISE)).secret
            farm = await coordinator.accounts.authenticate(farm_key)
            plain = SubmitJobRequest.model_validate({"type": "command", "input": "echo"})
            for start in range(0, history, 500):
                await coordinator.jobs.submit_many(client, [(plain, None)] * min(500, history - start))
            gpu = SubmitJobRequest.model_validate(
                {"type": "command", "input": "x", "requirements": {"gpu_type": "a100"}}
            )
            pending = (await coordinator.jobs.submit(client, gpu)).job.id
            key = public_key_text(Ed25519PrivateKey.generate())
            registered = await coordinator.miners.register(
                farm, RegisterRequest(name="cpu", runtimes=["command"], public_key=key)
            )
            miner = f"/v1/miners/{registered.miner_id}"
            headers = {"X-Api-Key": created.secret}
            miner_headers = {"X-Api-Key": farm_key}
            clock = clock_stores(coordinator)
            http = AsgiClient(manager.app)

            def reading(path: str) -> Call:
                return lambda _index: http.get(path, headers=headers)

            for path in (f"/v1/jobs/{pending}", "/v1/jobs?limit=20", "/v1/jobs?limit=20&status=pending"):
                for _ in range(20):  # warm
                    (await reading(path)(0)).raise_for_status()
            print(f"{coordinator.database.dialect}, {history + 1} jobs of history, {requests} requests each")
            print(f"{len(stores_of(coordinator))} stores timed")
            if "status" in only:
                await measure("GET /v1/jobs/{id}", reading(f"/v1/jobs/{pending}"), requests, coordinator, clock)
            if "list" in only:
                await measure("GET /v1/jobs?limit=20", reading("/v1/jobs?limit=20"), requests, coordinator, clock)
            if "pending" in only:
                path = "/v1/jobs?limit=20&status=pending"
                await measure("  &status=pending", reading(path), requests, coordinator, clock)
            if not {"submit", "claim", "complete", "batch"} & set(only):
                return
            body = {"type": "command", "input": "echo hello", "params": {"n": 1}}

            async def submit(_index: int) -> Answer:
                return await http.post("/v1/jobs", json=body, headers=headers)

            await measure("POST /v1/jobs", submit, requests, coordinator, clock)
            leases: list[tuple[str, str]] = []

            async def claim(_index: int) -> Answer:
                answer = await http.post(
                    f"{miner}/claim", json={"max_jobs": 1, "wait_seconds": 0, "start": True}, headers=miner_headers
                )
                leases.extend((job["job_id"], job["lease_id"]) for job in answer.json()["jobs"])
                return answer

            if not {"claim", "complete", "batch"} & set(only):
                return
            await measure("POST claim (start)", claim, requests, coordinator, clock)
            half = len(leases) // 2
            singles, batched = leases[:half], leases[half:]

            async def complete(index: int) -> Answer:
                job_id, lease_id = singles[index]
                return await http.post(
                    f"{miner}/jobs/{job_id}/complete", json={"lease_id": lease_id}, headers=miner_headers
                )

            await measure("POST complete", complete, len(singles) - 2, coordinator, clock)

            async def complete_batch(index: int) -> Answer:
                items = [
                    {"job_id": job_id, "lease_id": lease_id}
                    for job_id, lease_id in batched[index * BATCH : (index + 1) * BATCH]
                ]
                return await http.post(f"{miner}/jobs/complete", json={"jobs": items}, headers=miner_headers)

            await measure(f"POST complete x{BATCH}", complete_batch, len(batched) // BATCH - 2, coordinator, clock)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--history", type=int, default=2000)
    parser.add_argument("--database-url")
    parser.add_argument("--only", default=",".join(ROUTES), help=f"comma-separated, of {', '.join(ROUTES)}")
    arguments = parser.parse_args()
    chosen = [name.strip() for name in arguments.only.split(",") if name.strip()]
    asyncio.run(main(arguments.requests, arguments.history, arguments.database_url, chosen))
