"""`GET /v1/monitor/jobs`, `GET /v1/monitor/miners` and `GET /v1/whoami` on SQLite and PostgreSQL, through the
real app: the numbers match a known set of jobs (counts, queue places in the claim's order, the hour's
throughput, waits to start), a client sees only its own jobs, the roles are enforced, and every statement the
monitor runs is a search on an index (EXPLAIN), never a scan of the jobs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from aitbc.domain.accounts import Principal
from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.protocol.miners import FailRequest, FinishRequest
from aitbc.wiring import Coordinator
from tests.helpers import job_request, register_miner

Api = tuple[httpx.AsyncClient, Coordinator]
A100 = [{"model": "A100", "vram_gb": 80}]


async def keyed(coordinator: Coordinator, account: str, role: Role) -> tuple[dict[str, str], Principal]:
    secret = (await coordinator.accounts.create_key(account, role)).secret
    return {"X-Api-Key": secret}, await coordinator.accounts.authenticate(secret)


class World:
    """Alice and Bob's jobs, submitted a second apart, and a miner that runs some of them."""

    def __init__(self, coordinator: Coordinator, clock: ManualClock) -> None:
        self.coordinator = coordinator
        self.clock = clock
        self.ids: dict[str, str] = {}

    async def setup(self) -> None:
        c = self.coordinator
        self.alice_headers, self.alice = await keyed(c, "alice", Role.CLIENT)
        self.bob_headers, self.bob = await keyed(c, "bob", Role.CLIENT)
        self.miner_headers, self.farm = await keyed(c, "farm", Role.MINER)
        self.miner = await register_miner(c, self.farm, gpus=A100)
        for name, who, spec in (
            ("a1", self.alice, {"priority": "normal"}),
            ("b1", self.bob, {"priority": "high"}),
            ("a2", self.alice, {"priority": "low"}),
            ("a3", self.alice, {"priority": "urgent"}),
            ("b2", self.bob, {"priority": "normal"}),
            ("a4", self.alice, {"type": "nobody-runs-this", "queue_timeout_seconds": 3600}),
            ("a5", self.alice, {}),
        ):
            self.ids[name] = (await c.jobs.submit(who, job_request(**spec))).job.id
            self.clock.advance(1)
        await c.jobs.cancel(self.alice, self.ids["a5"])
        self.clock.advance(1)
        await self.run("a3", ok=True)  # submitted at +3 s, started at +8 s: a wait of 5 s
        self.ids["a6"] = (await c.jobs.submit(self.alice, job_request(priority="urgent"))).job.id
        self.clock.advance(10)
        await self.run("a6", ok=False)  # submitted at +10 s, started at +20 s: a wait of 10 s

    async def run(self, name: str, ok: bool) -> None:
        c = self.coordinator
        (assignment,) = await c.claiming.claim(self.farm, self.miner, 1, 0)
        assert assignment.job_id == self.ids[name]  # the claim's order: the urgent job first
        await c.running.start(self.farm, self.miner, assignment.job_id, assignment.lease_id)
        self.clock.advance(2)
        if ok:
            await c.finishing.complete(
                self.farm, self.miner, assignment.job_id, FinishRequest(lease_id=assignment.lease_id)
            )
        else:
            request = FailRequest(lease_id=assignment.lease_id, reason="runtime_error", message="boom")
            await c.finishing.fail(self.farm, self.miner, assignment.job_id, request)


@pytest.fixture
async def world(api: Api, clock: ManualClock) -> World:
    made = World(api[1], clock)
    await made.setup()
    return made


async def test_job_metrics_match_the_submitted_jobs(api: Api, world: World) -> None:
    http, coordinator = api
    answer = await http.get("/v1/monitor/jobs", headers=world.alice_headers)
    assert answer.status_code == 200, answer.text
    metrics = answer.json()
    assert metrics["component"] == "jobs"
    assert metrics["total"] == 6
    assert metrics["by_status"] == {
        "pending": 3,
        "assigned": 0,
        "running": 0,
        "completed": 1,
        "failed": 1,
        "canceling": 0,
        "canceled": 1,
    }
    assert (metrics["pending"], metrics["running"]) == (3, 0)
    # The claim's order for `command`: b1 (high), then a1 and b2 (normal, by age), then a2 (low); Bob's jobs
    # count as ahead of Alice's, but are not listed to her.
    places = [(place["job_id"], place["ahead"], place["ahead_capped"]) for place in metrics["queue"]]
    ids = world.ids
    assert places == [(ids["a1"], 1, False), (ids["a2"], 3, False), (ids["a4"], 0, False)]
    assert [place["priority"] for place in metrics["queue"]] == ["normal", "low", "normal"]
    assert metrics["rates"] == {
        "window_minutes": 60,
        "submitted": 6,
        "completed": 1,
        "failed": 1,
        "canceled": 1,
        "submitted_per_minute": 0.1,
        "completed_per_minute": 0.017,
        "failed_per_minute": 0.017,
    }
    assert metrics["waits"] == {"sample": 2, "sample_of": 200, "median_seconds": 7.5, "p90_seconds": 9.5}
    events = await coordinator.job_store.events_since(world.alice.account.id, 0, None, 1000)
    assert metrics["event_seq"] == events[-1].seq

    bob = (await http.get("/v1/monitor/jobs", headers=world.bob_headers)).json()
    assert (bob["total"], bob["pending"]) == (2, 2)
    assert [(place["job_id"], place["ahead"]) for place in bob["queue"]] == [(ids["b1"], 0), (ids["b2"], 2)]
    assert bob["waits"]["sample"] == 0 and bob["waits"]["median_seconds"] is None

    world.clock.advance(3600)  # out of the hour's window; the counts stay
    later = (await http.get("/v1/monitor/jobs", headers=world.alice_headers)).json()
    assert later["total"] == 6 and later["rates"]["submitted"] == 0 and later["rates"]["completed_per_minute"] == 0


async def test_queue_places_stop_at_the_cap(api: Api, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from aitbc.services import monitoring

    monkeypatch.setattr(monitoring, "AHEAD_CAP", 2)
    http, _ = api
    metrics = (await http.get("/v1/monitor/jobs", headers=world.alice_headers)).json()
    ids = world.ids
    places = [(place["job_id"], place["ahead"], place["ahead_capped"]) for place in metrics["queue"]]
    assert places == [(ids["a1"], 1, False), (ids["a2"], 2, True), (ids["a4"], 0, False)]


async def test_miner_metrics_count_live_miners_and_free_slots(api: Api, world: World) -> None:
    http, coordinator = api
    idle = (await http.get("/v1/monitor/miners", headers=world.alice_headers)).json()
    assert (idle["live_miners"], idle["slots"], idle["busy_slots"], idle["free_slots"]) == (1, 1, 0, 1)
    assert idle["gpus"] == {"A100": 1}
    (assignment,) = await coordinator.claiming.claim(world.farm, world.miner, 1, 0)
    busy = (await http.get("/v1/monitor/miners", headers=world.alice_headers)).json()
    assert (busy["busy_slots"], busy["free_slots"]) == (1, 0)
    assert assignment.job_id == world.ids["b1"]
    world.clock.advance(coordinator.settings.miner_lost_after_seconds + 1)
    gone = (await http.get("/v1/monitor/miners", headers=world.alice_headers)).json()
    assert (gone["live_miners"], gone["slots"], gone["free_slots"]) == (0, 0, 0)


async def test_roles_and_whoami(api: Api, world: World) -> None:
    http, coordinator = api
    assert (await http.get("/v1/monitor/jobs")).status_code == 401
    refused = await http.get("/v1/monitor/jobs", headers=world.miner_headers)
    assert refused.status_code == 403, refused.text
    assert (await http.get("/v1/monitor/miners", headers=world.miner_headers)).status_code == 403
    me = (await http.get("/v1/whoami", headers=world.alice_headers)).json()
    assert me == {"account": "alice", "role": "client", "plan": "free", "key_id": world.alice.key_id}
    assert (await http.get("/v1/whoami", headers=world.miner_headers)).json()["role"] == "miner"
    bad = await http.get("/v1/whoami", headers={"X-Api-Key": "aitbc_" + "x" * 43})
    assert bad.status_code == 401
    admin_headers, _ = await keyed(coordinator, "root", Role.ADMIN)
    as_admin = (await http.get("/v1/monitor/jobs", headers=admin_headers)).json()
    assert as_admin["total"] == 0  # an admin's own account: the monitor is about the caller's jobs


@contextmanager
def statements_run(coordinator: Coordinator) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(_connection: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        seen.append((statement, parameters))

    engine = coordinator.database.reader
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


FULL_SCAN = {
    "sqlite": re.compile(r"^SCAN (jobs|job_events|accounts|miners)\b(?! USING)"),
    "postgresql": re.compile(r"Seq Scan on (jobs|job_events|accounts|miners)\b"),
}
WHOLE_INDEX = re.compile(r"^SCAN (jobs|job_events|accounts|miners) USING")  # SQLite: every entry of an index


async def test_every_monitor_statement_searches_an_index(api: Api, world: World) -> None:
    http, coordinator = api
    with statements_run(coordinator) as seen:
        for path in ("/v1/monitor/jobs", "/v1/monitor/miners"):
            assert (await http.get(path, headers=world.alice_headers)).status_code == 200
    monitor = [(statement, parameters) for statement, parameters in seen if "jobs" in statement]
    assert len(monitor) >= 5, seen  # the window, the latest jobs, the queue and its places, what miners hold
    dialect = coordinator.database.dialect
    with coordinator.database.reader.connect() as connection:
        if dialect == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")  # a table this small is scanned otherwise
        for statement, parameters in monitor:
            explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
            rows = connection.exec_driver_sql(explain + statement, parameters).all()
            plan = [str(row[-1]) for row in rows]
            assert not [line for line in plan if FULL_SCAN[dialect].search(line)], (statement, plan)
            assert not [line for line in plan if WHOLE_INDEX.search(line)], (statement, plan)
