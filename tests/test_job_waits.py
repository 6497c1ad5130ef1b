"""`Prefer: wait=N` (RFC 7240, as Replicate's sync mode): a submit or status GET held until the job ends, then
answered with its `result`, against the real app with a real miner agent running `command` jobs. A job still
going when N is up is answered as it stands; a client that hangs up (over a real socket) releases its waiter at
once; a stopping hub ends every wait; a replay of an Idempotency-Key waits too; a job finished on another
replica ends a wait on this one; and every `Prefer` this does not understand is ignored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from aitbc.api.app import create_app
from aitbc.api.preferences import MAX_WAIT_SECONDS, wait_seconds
from aitbc.domain.plans import Role
from aitbc.miner.agent import Agent
from aitbc.protocol.miners import FinishRequest
from aitbc.settings import Settings
from aitbc.wiring import Coordinator, coordinator_session
from tests.helpers import job_request, principal, register_miner
from tests.miner.inprocess import InProcess, in_process
from tests.miner.test_command_runtime import command
from tests.support.served import served_app_in_thread
from tests.support.waiting import wait_until
from tests.test_replicas import replicas  # noqa: F401 - the fixture

READY_SECONDS = 20


async def ready(condition: Callable[[], bool], what: str) -> None:
    """Until `condition` holds (a waiter has reached its wait): a readiness signal, not a timing."""
    try:
        async with asyncio.timeout(READY_SECONDS):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} was never ready") from None


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


@asynccontextmanager
async def miner_running(stack: InProcess) -> AsyncIterator[Agent]:
    """A real miner agent (the `command` runtime, sandboxed), its claim asleep waiting for work."""
    agent = stack.agent(command(stack), drain=False, shutdown_grace_seconds=0.2)
    running = asyncio.create_task(agent.run())
    try:
        await ready(lambda: stack.coordinator.hub.claimers_waiting > 0, "the miner's claim")
        yield agent
    finally:
        agent.request_stop(immediately=True)
        await asyncio.wait_for(running, timeout=30)


def waiting(stack: InProcess, seconds: int | str, **headers: str) -> dict[str, str]:
    return {**stack.headers, "Prefer": f"wait={seconds}", **headers}


async def test_a_fast_job_is_answered_finished_with_its_result(stack: InProcess) -> None:
    hub = stack.coordinator.hub
    before = hub.subscriber_count  # the receipt signer's
    async with miner_running(stack):
        body = {"type": "command", "input": "echo hello", "name": "greeting", "tags": ["sync"]}
        answer = await stack.http.post("/v1/jobs", json=body, headers=waiting(stack, 50, **{"Idempotency-Key": "k"}))
        assert answer.status_code == 201, answer.text
        assert answer.headers["Preference-Applied"] == "wait=50"
        job = answer.json()
        assert (job["status"], job["result"], job["exit_code"], job["name"]) == ("completed", "hello\n", 0, "greeting")
        assert hub.subscriber_count == before

        replay = await stack.http.post("/v1/jobs", json=body, headers=waiting(stack, 50, **{"Idempotency-Key": "k"}))
        assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (200, "true")
        assert (replay.json()["job_id"], replay.json()["result"]) == (job["job_id"], "hello\n")

        again = await stack.http.get(f"/v1/jobs/{job['job_id']}", headers=waiting(stack, 5))
        assert (again.status_code, again.headers["Preference-Applied"]) == (200, "wait=5")
        assert (again.json()["status"], again.json()["result"]) == ("completed", "hello\n")
        plain = await stack.http.get(f"/v1/jobs/{job['job_id']}", headers=stack.headers)
        assert plain.json()["result"] is None and "Preference-Applied" not in plain.headers

        failing = await stack.http.post(
            "/v1/jobs", json={"type": "command", "input": "echo partial; exit 3"}, headers=waiting(stack, 50)
        )
        failed = failing.json()
        assert (failed["status"], failed["failure_reason"], failed["exit_code"]) == ("failed", "runtime_error", 3)
        assert failed["result"] == "partial\n"  # what it wrote before it failed
    assert hub.subscriber_count == before


async def test_a_slow_job_is_answered_as_it_stands_when_the_wait_is_up(stack: InProcess) -> None:
    hub = stack.coordinator.hub
    before = hub.subscriber_count
    async with miner_running(stack):
        answer = await stack.http.post(
            "/v1/jobs", json={"type": "command", "input": "echo started; sleep 600"}, headers=waiting(stack, 1)
        )
        assert answer.status_code == 201, answer.text
        assert answer.headers["Preference-Applied"] == "wait=1"
        job = answer.json()
        assert job["status"] in ("pending", "assigned", "running") and job["result"] is None
        assert hub.subscriber_count == before
        held = await stack.http.get(f"/v1/jobs/{job['job_id']}", headers=waiting(stack, 1))
        assert held.json()["status"] in ("pending", "assigned", "running") and held.json()["result"] is None

        canceled = await stack.http.post(f"/v1/jobs/{job['job_id']}/cancel", headers=stack.headers)
        assert canceled.json()["outcome"] in ("canceled", "canceling")
        ended = await stack.http.get(f"/v1/jobs/{job['job_id']}", headers=waiting(stack, 50))
        assert ended.json()["status"] == "canceled"  # the miner stopped it; the wait ended with it
    assert hub.subscriber_count == before


def test_a_client_that_hangs_up_releases_its_wait(tmp_path: Path) -> None:
    """Over a real socket (uvicorn): the held submit and the held status GET each end when their client
    closes its connection, long before their 60 seconds."""
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False)

    async def make_key() -> str:
        async with coordinator_session(settings) as coordinator:
            return (await coordinator.accounts.create_key("alice", Role.CLIENT)).secret

    key = asyncio.run(make_key())
    app = create_app(settings)
    with served_app_in_thread(app) as url:
        hub = app.state.coordinator.hub
        before = hub.subscriber_count
        headers = {"X-Api-Key": key, "Prefer": "wait=60"}
        pending = httpx.post(f"{url}/v1/jobs", json={"type": "nobody-runs-this"}, headers={"X-Api-Key": key})
        job_id = pending.json()["job_id"]

        async def hang_up(method: str, path: str, body: Any = None) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                request = asyncio.create_task(client.request(method, path, json=body, headers=headers))
                await ready(lambda: hub.subscriber_count == before + 1, "the held request")
                request.cancel()  # the client goes away: its connection closes mid-wait
                with pytest.raises(asyncio.CancelledError):
                    await request

        for method, path, body in (
            ("GET", f"/v1/jobs/{job_id}", None),
            ("POST", "/v1/jobs", {"type": "nobody-runs-this"}),
        ):
            asyncio.run(hang_up(method, path, body))
            wait_until(
                lambda: hub.subscriber_count == before, READY_SECONDS, what="the coordinator to notice the hang-up"
            )
        with httpx.Client(base_url=url, headers={"X-Api-Key": key}) as client:
            listed = client.get("/v1/jobs").json()
        assert listed["total"] == 2  # the held submit made its job before it waited
        assert {job["status"] for job in listed["jobs"]} == {"pending"}


async def test_a_stopping_coordinator_ends_every_wait(coordinator: Coordinator) -> None:
    alice = await principal(coordinator, "alice", Role.CLIENT)
    job = (await coordinator.jobs.submit(alice, job_request(type="nobody-runs-this"))).job
    before = coordinator.hub.subscriber_count
    held = asyncio.create_task(coordinator.job_views.get_and_wait(alice, job.id, MAX_WAIT_SECONDS))
    await ready(lambda: coordinator.hub.subscriber_count == before + 1, "the wait")
    await coordinator.hub.close()
    view = await asyncio.wait_for(held, timeout=READY_SECONDS)
    assert (view.status, view.result) == ("pending", None)
    assert coordinator.hub.subscriber_count == 0  # closed: every subscription ended


@pytest.mark.postgres
async def test_a_job_finished_on_another_replica_ends_a_wait_on_this_one(
    replicas: tuple[Coordinator, Coordinator],  # noqa: F811 - the fixture
) -> None:
    a, b = replicas
    alice = await principal(a, "alice", Role.CLIENT)
    owner = await principal(b, "farm", Role.MINER)
    miner = await register_miner(b, owner)
    job = (await a.jobs.submit(alice, job_request())).job
    before = a.hub.subscriber_count
    held = asyncio.create_task(a.job_views.get_and_wait(alice, job.id, MAX_WAIT_SECONDS))
    await ready(lambda: a.hub.subscriber_count == before + 1, "the wait on a")
    (assignment,) = await b.claiming.claim(owner, miner, 1, 0)
    await b.running.start(owner, miner, job.id, assignment.lease_id)
    await b.finishing.complete(owner, miner, job.id, FinishRequest(lease_id=assignment.lease_id))
    view = await asyncio.wait_for(held, timeout=READY_SECONDS)
    assert view.status == "completed" and a.hub.subscriber_count == before


@pytest.mark.parametrize(
    ("values", "seconds"),
    [
        (["wait=5"], 5),
        (["WAIT = 7"], 7),
        (['wait="9"'], 9),
        (["respond-async, wait=10"], 10),
        (["handling=lenient; foo=bar, wait=11; param=1"], 11),
        (["respond-async", "wait=12"], 12),
        (["wait=3, wait=30"], 3),  # only the first counts
        (["wait"], MAX_WAIT_SECONDS),  # Replicate's bare `wait`: the longest
        (["wait=61"], MAX_WAIT_SECONDS),
        (["wait=" + "9" * 400], MAX_WAIT_SECONDS),
        (["wait=0"], None),
        (["wait=-1"], None),
        (["wait=1.5"], None),
        (["wait=abc"], None),
        (["wait=５"], None),  # a full-width digit: not delta-seconds
        (["wait=", "wait=4"], None),
        (["respond-async"], None),
        (["return=minimal"], None),
        ([""], None),
        ([",,;="], None),
        (['x="a,wait=5"'], None),  # inside a quoted string: not a preference
    ],
)
def test_the_prefer_header_is_read_as_rfc_7240_says(values: list[str], seconds: int | None) -> None:
    assert wait_seconds(values) == seconds


@pytest.mark.parametrize("prefer", ["respond-async", "wait=abc", "wait=0", "wait=-3", "return=minimal", "wait=1e3"])
async def test_a_prefer_we_do_not_understand_is_ignored(
    api: tuple[httpx.AsyncClient, Coordinator], prefer: str
) -> None:
    http, coordinator = api
    alice = {"X-Api-Key": (await coordinator.accounts.create_key("alice", Role.CLIENT)).secret}
    before = coordinator.hub.subscriber_count
    made = await http.post("/v1/jobs", json={"type": "nobody-runs-this"}, headers={**alice, "Prefer": prefer})
    assert made.status_code == 201 and "Preference-Applied" not in made.headers
    shown = await http.get(f"/v1/jobs/{made.json()['job_id']}", headers={**alice, "Prefer": prefer})
    assert shown.status_code == 200 and "Preference-Applied" not in shown.headers
    assert shown.json()["status"] == "pending" and coordinator.hub.subscriber_count == before


async def test_a_long_wait_is_capped_and_another_tenants_job_is_404(api: tuple[httpx.AsyncClient, Coordinator]) -> None:
    http, coordinator = api
    alice = await principal(coordinator, "alice", Role.CLIENT)
    alice_key = {"X-Api-Key": (await coordinator.accounts.create_key("alice", Role.CLIENT)).secret}
    bob_key = {"X-Api-Key": (await coordinator.accounts.create_key("bob", Role.CLIENT)).secret}
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    before = coordinator.hub.subscriber_count
    job = (await coordinator.jobs.submit(alice, job_request())).job
    (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    await coordinator.running.start(owner, miner, job.id, assignment.lease_id)
    await coordinator.finishing.complete(owner, miner, job.id, FinishRequest(lease_id=assignment.lease_id))
    answer = await http.get(f"/v1/jobs/{job.id}", headers={**alice_key, "Prefer": "wait=100000"})
    assert (answer.status_code, answer.headers["Preference-Applied"]) == (200, f"wait={MAX_WAIT_SECONDS}")
    assert answer.json()["status"] == "completed" and answer.json()["result"] is None  # it uploaded no files
    theirs = await http.get(f"/v1/jobs/{job.id}", headers={**bob_key, "Prefer": "wait=60"})
    assert theirs.status_code == 404 and coordinator.hub.subscriber_count == before
