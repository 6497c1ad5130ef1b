"""Saying no at submit (`services/admission.py`): a job no connected miner could run is refused with what it
needs and what is on offer, or accepted with a warning and the queue timeout the client chose, after which it
expires at no charge — against the real app on SQLite and PostgreSQL, miners speaking the real HTTP protocol."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from aitbc.domain.accounts import Miner
from aitbc.domain.clock import ManualClock
from aitbc.domain.job import JobSpec, Requirements
from aitbc.domain.matching import Capabilities, Gpu
from aitbc.domain.plans import Role
from aitbc.services.admission import FREE_MINER, NO_MINER, waiting_reason
from aitbc.wiring import Coordinator
from tests.test_agent_pinning import balance, key, miner, submit

Api = tuple[httpx.AsyncClient, Coordinator]
A100 = [{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}]


def _miner(name: str, runtimes: set[str], models: frozenset[str] = frozenset(), gpus: tuple[Gpu, ...] = ()) -> Miner:
    clock = ManualClock()
    return Miner(
        id=f"miner_{name}",
        account_id="farm",
        name=name,
        capabilities=Capabilities(runtimes=frozenset(runtimes), models=frozenset(models), gpus=gpus),
        max_concurrency=1,
        public_key="",
        registered_at=clock.now(),
        last_seen_at=clock.now(),
    )


def test_waiting_for_names_the_closest_miners_reasons_not_every_miners_merged() -> None:
    spec = JobSpec(type="embedding", model="big-model", input="hi", requirements=Requirements(gpu_type="a100"))
    command_only = _miner("cmd", {"command"})  # lacks the runtime and the GPU: two reasons
    close = _miner(
        "close", {"embedding"}, frozenset({"small-model"}), (Gpu("NVIDIA A100", 80),)
    )  # lacks the model only
    reason = waiting_reason(spec, [command_only, close])
    assert reason == "no connected miner can run it (model 'big-model' not served)"
    assert "runtime" not in reason and "needs" not in reason
    assert waiting_reason(spec, []) == NO_MINER
    fits = _miner("fits", {"embedding"}, frozenset({"big-model"}), (Gpu("NVIDIA A100", 80),))
    assert waiting_reason(spec, [command_only, fits]) == FREE_MINER


async def test_a_job_no_connected_miner_can_run_is_refused_with_what_is_on_offer(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "rig", runtimes=["command", "embedding"], models=["all-MiniLM-L6-v2"])
    before = await balance(http, client)
    refused = await submit(http, client, type="embedding", model="bge-large", input="hello")
    assert refused.status_code == 422, refused.text
    message = refused.json()["message"]
    assert "model 'bge-large' not served" in message
    assert "runtimes command, embedding" in message and "models all-MiniLM-L6-v2" in message
    assert "queue_timeout_seconds" in message and "--queue-timeout" in message  # what to do next
    for wanted in ({"type": "text-generation"}, {"requirements": {"gpu_type": "a100"}}):
        answer = await submit(http, client, **wanted)
        assert answer.status_code == 422, answer.text
    listed = (await http.get("/v1/jobs", headers=client)).json()
    assert listed["total"] == 0  # nothing stored
    assert await balance(http, client) == before  # nothing held


async def test_a_runnable_job_is_accepted_without_warnings(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "rig")
    answer = await submit(http, client)
    assert answer.status_code == 201, answer.text
    assert answer.json()["warnings"] == []
    assert answer.json()["waiting_for"] == FREE_MINER


async def test_with_no_miner_connected_a_job_is_accepted_with_a_warning(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    answer = await submit(http, client)
    assert answer.status_code == 201, answer.text
    assert answer.json()["warnings"] == [f"{NO_MINER} now: it waits until one connects"]


async def test_a_queue_timeout_accepts_it_with_a_warning_and_it_expires_at_no_charge(
    api: Api, clock: ManualClock
) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    rig = await miner(http, coordinator, "rig")  # command only, no GPU
    before = await balance(http, client)
    answer = await submit(http, client, requirements={"gpu_type": "a100"}, queue_timeout_seconds=600)
    assert answer.status_code == 201, answer.text
    job = answer.json()
    (warning,) = job["warnings"]
    assert "needs 1x a100" in warning and "waits at most 600 s" in warning and "no charge" in warning
    assert job["waiting_for"] == "no connected miner can run it (needs 1x a100)"
    assert await balance(http, client) < before  # held while it waits
    for _ in range(60):  # ten minutes, the miner polling all along (it takes nothing: the job is not for it)
        clock.advance(9.99)
        assert await rig.claim() == []
    await coordinator.reaper.run_once()
    assert (await http.get(f"/v1/jobs/{job['job_id']}", headers=client)).json()["status"] == "pending"
    clock.advance(2)
    await coordinator.reaper.run_once()
    ended = (await http.get(f"/v1/jobs/{job['job_id']}", headers=client)).json()
    assert ended["status"] == "failed" and ended["failure_reason"] == "expired"
    assert ended["error"].startswith("no miner took the job within 600 s (no connected miner can run it")
    assert Decimal(ended["cost"]) == 0
    assert await balance(http, client) == before  # the hold released, nothing charged


async def test_a_queue_timeout_past_the_coordinators_ttl_or_malformed_is_refused(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    ttl = coordinator.settings.queue_ttl_seconds
    too_long = await submit(http, client, queue_timeout_seconds=ttl + 1)
    assert too_long.status_code == 422 and f"at most {ttl} s" in too_long.json()["message"]
    bad: Any
    for bad in (0, -5, "soon", 1.5, 10**9):
        answer = await submit(http, client, queue_timeout_seconds=bad)
        assert answer.status_code == 422, (bad, answer.text)
    assert (await http.get("/v1/jobs", headers=client)).json()["total"] == 0


async def test_a_batch_says_which_item_no_miner_can_run_and_stores_none(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "rig")
    jobs: list[dict[str, Any]] = [
        {"type": "command", "input": "echo one"},
        {"type": "command", "input": "echo gpu", "requirements": {"gpu_type": "a100"}},
    ]
    refused = await http.post("/v1/jobs/batch", json={"jobs": jobs}, headers=client)
    assert refused.status_code == 422, refused.text
    assert refused.json()["item"] == 1
    assert (await http.get("/v1/jobs", headers=client)).json()["total"] == 0
    jobs[1]["queue_timeout_seconds"] = 60
    accepted = await http.post("/v1/jobs/batch", json={"jobs": jobs}, headers=client)
    assert accepted.status_code == 201, accepted.text
    first, second = accepted.json()["jobs"]
    assert first["warnings"] == [] and "needs 1x a100" in second["warnings"][0]


async def test_an_idempotent_replay_with_a_queue_timeout_answers_the_same_job(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "rig", gpus=A100)
    headers = client | {"Idempotency-Key": "one"}
    body = {"type": "command", "input": "echo hi", "queue_timeout_seconds": 120}
    first = await http.post("/v1/jobs", json=body, headers=headers)
    again = await http.post("/v1/jobs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["job_id"] == again.json()["job_id"]
    other = await http.post("/v1/jobs", json=body | {"queue_timeout_seconds": 60}, headers=headers)
    assert other.status_code == 409  # the same key for another request


async def test_a_job_a_registered_miner_not_connected_now_can_run_is_accepted_with_a_warning(
    api: Api, clock: ManualClock
) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "embedder", runtimes=["embedding"], models=["all-MiniLM-L6-v2"])
    clock.advance(coordinator.settings.miner_active_seconds + 30)  # the embedder went quiet (a restart, say)
    await miner(http, coordinator, "cpu")  # the one connected now runs commands only
    body = {"type": "embedding", "model": "all-MiniLM-L6-v2", "input": "hello"}
    answer = await submit(http, client, **body)
    assert answer.status_code == 201, answer.text
    (warning,) = answer.json()["warnings"]
    assert "miner 'embedder', which can, was last heard from" in warning
    assert (await submit(http, client, **body | {"model": "bge-large"})).status_code == 422  # none ever could
    clock.advance(coordinator.settings.queue_ttl_seconds)  # heard from too long ago to count
    await miner(http, coordinator, "cpu")
    assert (await submit(http, client, **body)).status_code == 422
