"""The marketplace API — `GET /v1/marketplace/gpus` and `POST /v1/marketplace/quote` — against the real app on
SQLite and PostgreSQL, with miners registering (and claiming) over the real HTTP protocol."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.domain.pricing import PriceTable
from aitbc.wiring import Coordinator
from tests.support.protocol_miner import HttpMiner

Api = tuple[httpx.AsyncClient, Coordinator]


async def key(coordinator: Coordinator, account: str, role: Role) -> dict[str, str]:
    return {"X-Api-Key": (await coordinator.accounts.create_key(account, role)).secret}


async def fleet(http: httpx.AsyncClient, coordinator: Coordinator) -> dict[str, HttpMiner]:
    """Four live miners: two GPU models in us-west, one in us-east, and a CPU-only one that said no region."""
    secret = (await coordinator.accounts.create_key("farm", Role.MINER)).secret
    specs: dict[str, dict[str, Any]] = {
        "west-4090": {
            "region": "US-West",
            "gpus": [{"model": "NVIDIA GeForce RTX 4090", "vram_gb": 24}],
            "runtimes": ["text-generation"],
            "models": ["gpt2"],
        },
        "west-a100": {
            "region": "us-west",
            "gpus": [{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}] * 2,
            "runtimes": ["command", "text-generation"],
            "models": ["gpt2", "llama"],
        },
        "east-3090": {
            "region": "us-east",
            "gpus": [{"model": "RTX 3090", "vram_gb": 24}],
            "runtimes": ["text-generation"],
            "models": ["llama"],
        },
        "cpu": {"runtimes": ["command"]},
    }
    made = {}
    for name, spec in specs.items():
        made[name] = HttpMiner(http, secret, name=name, **spec)
        await made[name].register()
    return made


async def listed(http: httpx.AsyncClient, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    answer = await http.get("/v1/marketplace/gpus", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    offers: list[dict[str, Any]] = answer.json()["offers"]
    return offers


async def test_the_gpus_on_offer_cheapest_first_with_their_load_and_queue(api: Api, clock: ManualClock) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    miners = await fleet(http, coordinator)
    for body in (
        {"model": "gpt2", "input": "a"},
        {"model": "gpt2", "input": "b"},
        {"model": "gpt2", "input": "c", "requirements": {"gpu_type": "a100"}},
        {"model": "llama", "input": "d", "requirements": {"miner_id": "east-3090"}},
    ):
        assert (await http.post("/v1/jobs", json=body, headers=client)).status_code == 201
        clock.advance(1)  # the queue in submit order
    offers = await listed(http, client)
    assert [o["name"] for o in offers] == ["cpu", "east-3090", "west-4090", "west-a100"]
    by_name = {o["name"]: o for o in offers}
    assert [o["price_per_hour"] for o in offers] == ["0.01", "0.03", "0.04", "0.10"]
    assert {name: o["queue"] for name, o in by_name.items()} == {
        "cpu": 0,
        "east-3090": 1,  # the job pinned to it, and no gpt2 job (it serves llama only)
        "west-4090": 2,  # the gpt2 jobs that ask for no GPU model
        "west-a100": 3,  # those and the A100 one
    }
    a100 = by_name["west-a100"]
    assert a100["miner_id"] == miners["west-a100"].miner_id and a100["region"] == "us-west"
    assert a100["gpus"] == [{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80.0, "count": 2, "price_per_hour": "0.10"}]
    assert (a100["gpu_count"], a100["gpus_busy"], a100["gpus_free"], a100["slots"]) == (2, 0, 2, 1)
    assert by_name["west-4090"]["region"] == "us-west"  # registered as US-West: one region, any case
    assert by_name["cpu"]["region"] is None and by_name["cpu"]["gpus"] == []
    (taken,) = await miners["west-a100"].claim()
    assert taken["input"] == "a"  # the oldest: it asks for no GPU model, and still holds one of the two
    after = {o["name"]: o for o in await listed(http, client)}
    a100 = after["west-a100"]
    assert (a100["gpus_busy"], a100["gpus_free"], a100["slots_busy"], a100["queue"]) == (1, 1, 1, 2)
    assert after["west-4090"]["queue"] == 1


async def test_filters_by_model_region_and_gpu_and_only_live_miners(api: Api, clock: ManualClock) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await fleet(http, coordinator)

    async def names(**params: str) -> list[str]:
        return [offer["name"] for offer in await listed(http, client, **params)]

    assert await names(model="gpt2", region="us-west") == ["west-4090", "west-a100"]
    assert await names(model="gpt2", region="US-WEST") == ["west-4090", "west-a100"]
    assert await names(model="llama") == ["east-3090", "west-a100"]
    assert await names(region="us-east") == ["east-3090"]
    assert await names(gpu_type="rtx4090") == ["west-4090"]
    assert await names(gpu_type="A100") == ["west-a100"]
    assert await names(region="mars") == [] and await names(model="no-such-model") == []
    clock.advance(coordinator.settings.miner_lost_after_seconds + 1)
    assert await names() == []  # gone quiet: no longer on offer


async def test_the_listing_is_for_clients_and_names_no_tenants_jobs(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice", Role.CLIENT)
    bob = await key(coordinator, "bob", Role.CLIENT)
    miners = await fleet(http, coordinator)
    job = (await http.post("/v1/jobs", json={"model": "gpt2", "input": "secret prompt"}, headers=alice)).json()
    await miners["west-4090"].claim()
    answer = await http.get("/v1/marketplace/gpus", headers=bob)
    assert answer.status_code == 200
    alice_account = (await coordinator.accounts.account_named("alice")).id
    for private in (job["job_id"], "secret prompt", alice_account, "lease_"):
        assert private not in answer.text
    assert (await http.get("/v1/marketplace/gpus")).status_code == 401
    miner_key = {"X-Api-Key": miners["cpu"].api_key}
    assert (await http.get("/v1/marketplace/gpus", headers=miner_key)).status_code == 403
    assert (await http.post("/v1/marketplace/quote", json={"model": "gpt2"}, headers=miner_key)).status_code == 403


async def test_bad_regions_are_refused_where_they_come_in(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    secret = (await coordinator.accounts.create_key("farm", Role.MINER)).secret
    for region in ("", "-west", "us west", "us/west", "a" * 65, "ü-west", "us-west\n"):
        refused = await http.get("/v1/marketplace/gpus", params={"region": region}, headers=client)
        assert refused.status_code == 422, (region, refused.text)
        assert "region" in refused.json()["message"]
        miner = HttpMiner(http, secret, name=f"m-{len(region)}", region=region)
        body = {"name": miner.name, "runtimes": ["command"], "public_key": "A" * 43 + "=", "region": region}
        registered = await http.post("/v1/miners/register", json=body, headers=miner.headers)
        assert registered.status_code == 422, (region, registered.text)
    for params in ({"model": "x" * 201}, {"model": ""}, {"gpu_type": "rtx/4090"}, {"model": "gpt2\x00"}):
        refused = await http.get("/v1/marketplace/gpus", params=params, headers=client)
        assert refused.status_code == 422, (params, refused.text)
    assert await listed(http, client) == []


def test_the_guides_rtx4090_has_its_own_price() -> None:
    prices = PriceTable()
    assert prices.hourly("rtx4090") == prices.hourly("NVIDIA GeForce RTX 4090") == Decimal("0.04")
    assert prices.hourly("RTX 3090") == Decimal("0.03")  # the two RTX models do not borrow each other's price


async def test_a_quote_is_the_cheapest_gpu_on_offer_then_the_shortest_queue(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await fleet(http, coordinator)
    secret = (await coordinator.accounts.create_key("farm-2", Role.MINER)).secret
    h100 = HttpMiner(
        http,
        secret,
        name="h100",
        runtimes=["text-generation"],
        models=["gpt2"],
        gpus=[{"model": "H100", "vram_gb": 80}],
    )
    await h100.register()
    before = Decimal((await http.get("/v1/billing/balance", headers=client)).json()["available"])

    async def quote(**body: Any) -> dict[str, Any]:
        answer = await http.post("/v1/marketplace/quote", json={"model": "gpt2", "input": "hi", **body}, headers=client)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    cheapest = await quote()
    assert [(o["gpu_type"], o["price_per_hour"], o["miners"]) for o in cheapest["options"]] == [
        ("rtx4090", "0.04", 1),
        ("a100", "0.10", 1),
        ("h100", "0.10", 1),  # an unpriced GPU costs as much as the dearest
    ]
    best = cheapest["best"]
    assert best == cheapest["options"][0] and best["max_cost"] == "0.040000000" and best["gpus_free"] == 1
    assert best["estimated_time_seconds"] == 3600 and best["estimated_cost"] == "0.040000000"
    # The A100's queue now holds a job; at the same price the H100 comes first.
    assert (
        await http.post("/v1/jobs", json={"model": "gpt2", "requirements": {"gpu_type": "a100"}}, headers=client)
    ).status_code == 201
    tied = await quote(requirements={"gpu_type": None})
    assert [o["gpu_type"] for o in tied["options"]][1:] == ["h100", "a100"]
    assert [o["queue"] for o in tied["options"]][1:] == [0, 1]
    assert (await quote(priority="high", timeout_seconds=1800))["best"]["price_per_hour"] == "0.06"
    assert (await quote(requirements={"gpu_type": "a100"}))["best"]["gpu_type"] == "a100"
    pinned = await quote(requirements={"miner_id": "h100"})
    assert [o["gpu_type"] for o in pinned["options"]] == ["h100"]
    jobs = (await http.get("/v1/jobs", headers=client)).json()
    assert jobs["total"] == 1  # a quote submits nothing
    held = Decimal((await http.get("/v1/billing/balance", headers=client)).json()["available"])
    assert before - held == Decimal("0.1")  # and holds nothing: only the A100 job's hold moved


async def test_a_quote_with_nothing_on_offer_says_why(api: Api, clock: ManualClock) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)

    async def reason(**body: Any) -> str:
        answer = await http.post("/v1/marketplace/quote", json={"model": "gpt2", **body}, headers=client)
        assert answer.status_code == 200, answer.text
        assert answer.json()["best"] is None and answer.json()["options"] == []
        found: str = answer.json()["reason"]
        return found

    assert await reason() == "no connected miner offers a GPU"
    await fleet(http, coordinator)
    assert await reason(requirements={"gpu_type": "v100"}) == (
        "no connected miner has a v100 GPU (on offer: a100, rtx3090, rtx4090)"
    )
    assert await reason(type="embedding") == (
        "no connected miner with a GPU can run this job: runtime 'embedding' not offered"
    )
    assert "model 'mistral' not served" in await reason(model="mistral")
    assert await reason(type="command", model=None, requirements={"miner_id": "cpu"}) == "its miner has no GPU"
    cannot = await http.post(
        "/v1/marketplace/quote", json={"model": "gpt2", "requirements": {"miner_id": "cpu"}}, headers=client
    )
    assert cannot.status_code == 422 and "runtime 'text-generation' not offered" in cannot.json()["message"]
    refused = await http.post("/v1/marketplace/quote", json={"input": "no type, no model"}, headers=client)
    assert refused.status_code == 422
    unknown = await http.post(
        "/v1/marketplace/quote", json={"model": "gpt2", "requirements": {"miner_id": "x"}}, headers=client
    )
    assert unknown.status_code == 404
