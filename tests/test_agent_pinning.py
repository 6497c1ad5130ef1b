"""`requirements.miner_id` (`aitbc client submit --agent-id`): a pinned job runs on its miner only, or fails
fast with a reason — against the real app on SQLite and PostgreSQL, miners speaking the real HTTP protocol."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.wiring import Coordinator
from tests.support.protocol_miner import HttpMiner

Api = tuple[httpx.AsyncClient, Coordinator]
RTX4090 = [{"model": "NVIDIA GeForce RTX 4090", "vram_gb": 24}]


async def key(coordinator: Coordinator, account: str, role: Role) -> dict[str, str]:
    return {"X-Api-Key": (await coordinator.accounts.create_key(account, role)).secret}


async def miner(http: httpx.AsyncClient, coordinator: Coordinator, name: str, **options: Any) -> HttpMiner:
    account = options.pop("account", "farm")
    made = HttpMiner(http, (await coordinator.accounts.create_key(account, Role.MINER)).secret, name=name, **options)
    await made.register()
    return made


async def submit(http: httpx.AsyncClient, client: dict[str, str], **body: Any) -> httpx.Response:
    return await http.post("/v1/jobs", json={"type": "command", "input": "echo hi", **body}, headers=client)


async def asleep(coordinator: Coordinator) -> None:
    """Until a claim is asleep in its long poll, waiting for work."""
    async with asyncio.timeout(10):
        while coordinator.hub.claimers_waiting == 0:
            await asyncio.sleep(0.01)


async def balance(http: httpx.AsyncClient, client: dict[str, str]) -> Decimal:
    return Decimal((await http.get("/v1/billing/balance", headers=client)).json()["available"])


async def test_a_pinned_job_goes_only_to_its_miner_while_another_idle_miner_polls(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    pinned_to = await miner(http, coordinator, "agent_456")
    idle = await miner(http, coordinator, "idle")
    # The idle miner is asleep in its long poll when the pinned job comes in: woken with the job named (no query),
    # it must pass it over and sleep on, until a job it may take arrives.
    polling = asyncio.create_task(idle.claim(max_jobs=4, wait=30))
    await asleep(coordinator)
    answer = await submit(http, client, requirements={"miner_id": "agent_456"})
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["requirements"]["miner_id"] == pinned_to.miner_id  # the name, resolved to the id
    assert job["waiting_for"] == f"waiting for its miner 'agent_456' ({pinned_to.miner_id}) to be free"
    await asleep(coordinator)
    assert not polling.done()
    unpinned = (await submit(http, client)).json()["job_id"]
    assert [taken["job_id"] for taken in await polling] == [unpinned]
    assert await idle.claim(max_jobs=4) == []  # the store's queue passes it over too
    (taken,) = await pinned_to.claim(max_jobs=4)
    assert taken["job_id"] == job["job_id"]
    assert "miner_id" not in taken["requirements"]  # what a miner is sent is unchanged: hardware only
    status = (await http.get(f"/v1/jobs/{job['job_id']}", headers=client)).json()
    assert status["miner_id"] == pinned_to.miner_id and status["status"] == "assigned"


async def test_a_pinned_job_can_be_named_by_miner_id_and_keeps_its_pin_on_retry(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    rig = await miner(http, coordinator, "rig")
    job = (await submit(http, client, requirements={"miner_id": rig.miner_id})).json()
    assert job["requirements"]["miner_id"] == rig.miner_id
    canceled = await http.post(f"/v1/jobs/{job['job_id']}/cancel", headers=client)
    assert canceled.json()["outcome"] == "canceled"
    retried = await http.post(f"/v1/jobs/{job['job_id']}/retry", headers=client)
    assert retried.status_code in (200, 201), retried.text
    assert retried.json()["requirements"]["miner_id"] == rig.miner_id


async def test_an_unknown_miner_is_refused_at_submit_and_nothing_is_stored(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "rig")
    before = await balance(http, client)
    for reference in ("agent_123", "miner_" + "x" * 20):
        refused = await submit(http, client, requirements={"miner_id": reference})
        assert refused.status_code == 404, refused.text
        assert reference in refused.json()["message"] and "marketplace gpu list" in refused.json()["message"]
    assert (await http.get("/v1/jobs", headers=client)).json()["total"] == 0
    assert await balance(http, client) == before


async def test_a_miner_that_cannot_run_the_job_is_refused_with_the_reason(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "cpu-rig")
    await miner(http, coordinator, "gpu-rig", runtimes=["text-generation"], gpus=RTX4090, models=["gpt2"])
    cases = [
        ({"type": "embedding", "requirements": {"miner_id": "cpu-rig"}}, "runtime 'embedding' not offered"),
        ({"requirements": {"miner_id": "cpu-rig", "gpu_type": "a100"}}, "needs 1x a100"),
        ({"type": None, "model": "llama", "requirements": {"miner_id": "gpu-rig"}}, "model 'llama' not served"),
        ({"type": None, "model": "gpt2", "requirements": {"miner_id": "gpu-rig", "gpu_count": 2}}, "needs 2x GPU"),
    ]
    for body, reason in cases:
        refused = await submit(http, client, **body)
        assert refused.status_code == 422, refused.text
        assert "cannot run this job" in refused.json()["message"] and reason in refused.json()["message"]
    fits = await submit(
        http, client, type=None, model="gpt2", requirements={"miner_id": "gpu-rig", "gpu_type": "rtx4090"}
    )
    assert fits.status_code == 201, fits.text
    assert (await http.get("/v1/jobs", headers=client)).json()["total"] == 1


async def test_a_miner_that_is_not_connected_is_refused(api: Api, clock: ManualClock) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "sleepy")
    clock.advance(coordinator.settings.miner_lost_after_seconds + 1)
    refused = await submit(http, client, requirements={"miner_id": "sleepy"})
    assert refused.status_code == 409, refused.text
    assert "'sleepy'" in refused.json()["message"] and "not connected" in refused.json()["message"]
    assert (await http.get("/v1/jobs", headers=client)).json()["total"] == 0


async def test_a_name_two_miners_share_needs_the_id(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    first = await miner(http, coordinator, "gpu-1", account="farm-a")
    await miner(http, coordinator, "gpu-1", account="farm-b")
    ambiguous = await submit(http, client, requirements={"miner_id": "gpu-1"})
    assert ambiguous.status_code == 422, ambiguous.text
    assert "2 connected miners are named 'gpu-1'" in ambiguous.json()["message"]
    by_id = await submit(http, client, requirements={"miner_id": first.miner_id})
    assert by_id.status_code == 201 and by_id.json()["requirements"]["miner_id"] == first.miner_id


async def test_a_pinned_job_whose_miner_is_lost_fails_no_miner_and_pays_nothing(api: Api, clock: ManualClock) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "rig")
    survivor = await miner(http, coordinator, "survivor")
    before = await balance(http, client)
    pinned = (await submit(http, client, requirements={"miner_id": "rig"})).json()["job_id"]
    unpinned = (await submit(http, client, requirements={"miner_id": "survivor"})).json()["job_id"]
    assert (await coordinator.reaper.run_once()).unpinnable == 0
    clock.advance(coordinator.settings.miner_active_seconds / 2)
    beat = await http.post(f"/v1/miners/{survivor.miner_id}/heartbeat", json={}, headers=survivor.headers)
    assert beat.status_code == 200, beat.text  # the survivor is still heard from; the rig is not
    clock.advance(coordinator.settings.miner_active_seconds / 2 + 1)
    status = (await http.get(f"/v1/jobs/{pinned}", headers=client)).json()
    assert status["waiting_for"].startswith(f"its miner {status['requirements']['miner_id']} is not connected")
    report = await coordinator.reaper.run_once()
    assert report.unpinnable == 1
    failed = (await http.get(f"/v1/jobs/{pinned}", headers=client)).json()
    assert failed["status"] == "failed" and failed["failure_reason"] == "no_miner"
    assert "was not heard from" in failed["error"]
    assert (await http.get(f"/v1/jobs/{unpinned}", headers=client)).json()["status"] == "pending"
    await http.post(f"/v1/jobs/{unpinned}/cancel", headers=client)
    assert await balance(http, client) == before  # both holds released: no_miner is the system's fault


async def test_a_miner_that_registers_again_without_what_its_pinned_jobs_need_fails_them(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    rig = await miner(http, coordinator, "rig", runtimes=["command", "embedding"])
    needs_embedding = (await submit(http, client, type="embedding", requirements={"miner_id": "rig"})).json()["job_id"]
    still_fits = (await submit(http, client, requirements={"miner_id": "rig"})).json()["job_id"]
    rig.runtimes = ["command"]
    await rig.register()
    failed = (await http.get(f"/v1/jobs/{needs_embedding}", headers=client)).json()
    assert failed["status"] == "failed" and failed["failure_reason"] == "no_miner"
    assert "registered again and cannot run it: runtime 'embedding' not offered" in failed["error"]
    assert (await http.get(f"/v1/jobs/{still_fits}", headers=client)).json()["status"] == "pending"


async def test_hostile_miner_references_are_refused_by_the_schema(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    for reference in ("", "rig\n", "a\x1b[31m", "x" * 201, 42):
        refused = await submit(http, client, requirements={"miner_id": reference})
        assert refused.status_code == 422, (reference, refused.text)
        assert "miner_id" in refused.json()["message"]
    assert (await http.get("/v1/jobs", headers=client)).json()["total"] == 0


async def test_another_tenants_pinned_job_is_not_theirs_to_see(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice", Role.CLIENT)
    bob = await key(coordinator, "bob", Role.CLIENT)
    await miner(http, coordinator, "rig")
    job_id = (await submit(http, alice, requirements={"miner_id": "rig"})).json()["job_id"]
    assert (await http.get(f"/v1/jobs/{job_id}", headers=bob)).status_code == 404
    assert (await http.post(f"/v1/jobs/{job_id}/cancel", headers=bob)).status_code == 404
