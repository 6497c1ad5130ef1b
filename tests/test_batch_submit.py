"""POST /v1/jobs/batch through the real app on both backends: all items stored in one transaction or none,
a result per item in order, per-item idempotency keys, and errors that name the refused item."""

from __future__ import annotations

from typing import Any

import httpx

from aitbc.domain.plans import Plan, PlanLimits, Role
from aitbc.protocol.batches import MAX_BATCH_JOBS
from aitbc.storage.interfaces import JobFilter
from aitbc.wiring import Coordinator

Api = tuple[httpx.AsyncClient, Coordinator]
EXPENSIVE = {"type": "command", "requirements": {"gpu_type": "a100", "gpu_count": 8}, "priority": "urgent"}


async def client_key(coordinator: Coordinator, account: str = "alice") -> dict[str, str]:
    return {"X-Api-Key": (await coordinator.accounts.create_key(account, Role.CLIENT)).secret}


async def stored(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await http.get("/v1/jobs", params={"limit": 1000}, headers=headers)
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


async def balance(http: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    response = await http.get("/v1/billing/balance", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_batch_stores_every_job_and_answers_one_result_per_item_in_order(api: Api) -> None:
    http, coordinator = api
    headers = await client_key(coordinator)
    items = [{"type": "command", "input": f"echo {n}", "priority": "high" if n % 2 else "low"} for n in range(5)]
    response = await http.post("/v1/jobs/batch", json={"jobs": items}, headers=headers)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["created"] == 5
    assert [result["index"] for result in answer["jobs"]] == list(range(5))
    assert all(result["created"] and result["job"]["status"] == "pending" for result in answer["jobs"])
    assert [result["job"]["priority"] for result in answer["jobs"]] == [item["priority"] for item in items]
    ids = {result["job"]["job_id"] for result in answer["jobs"]}
    assert {job["job_id"] for job in await stored(http, headers)} == ids
    one = (await http.get(f"/v1/jobs/{answer['jobs'][3]['job']['job_id']}", headers=headers)).json()
    assert one["status"] == "pending" and one["type"] == "command"
    held = (await balance(http, headers))["held"]
    assert held != "0" and float(held) > 0


async def test_one_invalid_item_is_422_naming_its_index_and_stores_nothing(api: Api) -> None:
    http, coordinator = api
    headers = await client_key(coordinator)
    before = await balance(http, headers)
    items: list[dict[str, Any]] = [{"type": "command", "input": "echo ok"} for _ in range(4)]
    items[2] = {"type": "command", "timeout_seconds": 0}
    response = await http.post("/v1/jobs/batch", json={"jobs": items}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["item"] == 2 and "jobs.2.timeout_seconds" in response.json()["message"]

    items[2] = {"priority": "high"}  # neither a type nor a model: refused by the service, not the schema
    response = await http.post("/v1/jobs/batch", json={"jobs": items}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["item"] == 2 and response.json()["message"].startswith("item 2: ")

    items[2] = {"type": "command", "input_file_id": "file_doesnotexist"}
    response = await http.post("/v1/jobs/batch", json={"jobs": items}, headers=headers)
    assert response.status_code == 404, response.text
    assert response.json()["item"] == 2
    assert await stored(http, headers) == []
    assert await balance(http, headers) == before


async def test_a_batch_the_balance_cannot_cover_is_402_naming_the_item_and_stores_nothing(api: Api) -> None:
    http, coordinator = api
    headers = await client_key(coordinator)
    before = await balance(http, headers)
    items = [{"type": "command", "input": "echo ok", "timeout_seconds": 60}] * 3 + [
        {**EXPENSIVE, "timeout_seconds": 86400}
    ]
    response = await http.post("/v1/jobs/batch", json={"jobs": items}, headers=headers)
    assert response.status_code == 402, response.text
    body = response.json()
    assert body["item"] == 3 and body["message"].startswith("item 3: ") and "credits grant" in body["message"]
    assert await stored(http, headers) == []
    assert await balance(http, headers) == before


async def test_the_unfinished_job_cap_counts_every_item(api: Api) -> None:
    http, coordinator = api
    limits = coordinator.settings.plan_limits
    object.__setattr__(coordinator.settings, "plan_limits", {**limits, Plan.FREE: PlanLimits(7, 60, 1000, 3)})
    headers = await client_key(coordinator)
    assert (await http.post("/v1/jobs", json={"type": "command"}, headers=headers)).status_code == 201
    response = await http.post("/v1/jobs/batch", json={"jobs": [{"type": "command"}] * 3}, headers=headers)
    assert response.status_code == 429, response.text
    assert response.json()["item"] == 2 and "3 unfinished jobs" in response.json()["message"]
    assert response.headers["Retry-After"]
    assert len(await stored(http, headers)) == 1
    response = await http.post("/v1/jobs/batch", json={"jobs": [{"type": "command"}] * 2}, headers=headers)
    assert response.status_code == 201, response.text


async def test_a_replayed_batch_answers_the_jobs_its_keys_made(api: Api) -> None:
    http, coordinator = api
    headers = await client_key(coordinator)
    items = [{"type": "command", "input": f"echo {n}", "idempotency_key": f"k-{n}"} for n in range(3)]
    first = await http.post("/v1/jobs/batch", json={"jobs": items}, headers=headers)
    assert first.status_code == 201, first.text
    again = await http.post("/v1/jobs/batch", json={"jobs": items}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["created"] == 0
    ids = [result["job"]["job_id"] for result in first.json()["jobs"]]
    assert [result["job"]["job_id"] for result in again.json()["jobs"]] == ids

    # A batch mixing replays and new items: the replays answer their jobs, the new one is made.
    mixed = [*items[:2], {"type": "command", "input": "echo new", "idempotency_key": "k-new"}]
    answer = (await http.post("/v1/jobs/batch", json={"jobs": mixed}, headers=headers)).json()
    assert [result["created"] for result in answer["jobs"]] == [False, False, True]
    assert [result["job"]["job_id"] for result in answer["jobs"][:2]] == ids[:2]
    assert len(await stored(http, headers)) == 4

    # A single submit with the same key and body answers the batch's job too.
    single = await http.post(
        "/v1/jobs", json={"type": "command", "input": "echo 0"}, headers={**headers, "Idempotency-Key": "k-0"}
    )
    assert single.status_code == 200 and single.json()["job_id"] == ids[0]

    # A key reused for a different job refuses the whole batch and names the item.
    reused = [
        {"type": "command", "input": "echo fresh"},
        {"type": "command", "input": "other", "idempotency_key": "k-1"},
    ]
    response = await http.post("/v1/jobs/batch", json={"jobs": reused}, headers=headers)
    assert response.status_code == 409, response.text
    assert response.json()["item"] == 1
    duplicate = [{"type": "command", "idempotency_key": "twice"}] * 2
    response = await http.post("/v1/jobs/batch", json={"jobs": duplicate}, headers=headers)
    assert response.status_code == 422 and response.json()["item"] == 1
    assert len(await stored(http, headers)) == 4


async def test_over_the_item_cap_or_empty_is_422_with_a_message(api: Api) -> None:
    http, coordinator = api
    headers = await client_key(coordinator)
    response = await http.post(
        "/v1/jobs/batch", json={"jobs": [{"type": "command"}] * (MAX_BATCH_JOBS + 1)}, headers=headers
    )
    assert response.status_code == 422, response.text
    assert "at most 1000" in response.json()["message"]
    response = await http.post("/v1/jobs/batch", json={"jobs": []}, headers=headers)
    assert response.status_code == 422, response.text
    assert await stored(http, headers) == []


async def test_a_full_batch_of_1000_is_one_request_and_one_transaction(api: Api) -> None:
    http, coordinator = api
    limits = coordinator.settings.plan_limits
    roomy = PlanLimits(7, 60, 1000, 10 * MAX_BATCH_JOBS)
    object.__setattr__(coordinator.settings, "plan_limits", {**limits, Plan.FREE: roomy})
    headers = await client_key(coordinator)
    items = [{"type": "command", "input": "x" * 10_000, "timeout_seconds": 1} for _ in range(MAX_BATCH_JOBS)]
    response = await http.post("/v1/jobs/batch", json={"jobs": items}, headers=headers)  # about 10 MB
    assert response.status_code == 201, response.text
    assert response.json()["created"] == MAX_BATCH_JOBS
    page = (await http.get("/v1/jobs", params={"limit": 1}, headers=headers)).json()
    assert page["total"] == MAX_BATCH_JOBS
    too_big = [{"type": "command", "input": "x" * 20_000}] * MAX_BATCH_JOBS
    response = await http.post("/v1/jobs/batch", json={"jobs": too_big}, headers=headers)
    assert response.status_code == 413, response.text


async def test_the_schema_declares_the_batch_and_links_its_jobs(api: Api) -> None:
    http, _coordinator = api
    schema = (await http.get("/openapi.json")).json()
    batch = schema["paths"]["/v1/jobs/batch"]["post"]
    assert {"200", "201", "402", "413", "422", "429"} <= set(batch["responses"])
    jobs = schema["components"]["schemas"]["SubmitBatchRequest"]["properties"]["jobs"]
    assert (jobs["minItems"], jobs["maxItems"]) == (1, MAX_BATCH_JOBS)
    get_job = schema["paths"]["/v1/jobs/{job_id}"]["get"]["operationId"]
    link = batch["responses"]["201"]["links"][get_job]
    assert link["parameters"] == {"path.job_id": "$response.body#/jobs/0/job/job_id"}


async def test_a_batch_is_one_request_toward_the_rate_limit(api: Api) -> None:
    http, coordinator = api
    coordinator.settings.plan_limits[Plan.FREE] = PlanLimits(7, 2, 1000, 100)  # this test's own settings
    headers = await client_key(coordinator)
    for _ in range(2):
        response = await http.post("/v1/jobs/batch", json={"jobs": [{"type": "command"}] * 10}, headers=headers)
        assert response.status_code == 201, response.text
    refused = await http.post("/v1/jobs/batch", json={"jobs": [{"type": "command"}]}, headers=headers)
    assert refused.status_code == 429 and "2 requests per minute" in refused.json()["message"]
    assert "item" not in refused.json()
    assert (await coordinator.job_store.list_jobs(JobFilter(), 100, None)).total == 20
