"""Job templates through the real app on SQLite and PostgreSQL: a client saves settings under a name and submits
with `"template": NAME`; the coordinator fills in what the submit leaves out (fields it sends win, `params` merge
key by key), records the template on the job, keeps each account's templates to itself, and refuses bad input
with a clear 4xx that changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aitbc.domain.plans import Plan, Role
from aitbc.domain.presets import MAX_PRESET_PARAMS_BYTES, MAX_TEMPLATES_PER_ACCOUNT
from aitbc.protocol.jobs import SubmitJobRequest
from aitbc.services.jobs import _request_hash
from aitbc.wiring import Coordinator

Api = tuple[httpx.AsyncClient, Coordinator]
# The submission guide's template.
GUIDE_TEMPLATE = {"name": "inference_template", "model": "gpt2", "priority": "normal", "timeout_seconds": 3600}


async def key(
    coordinator: Coordinator, account: str, role: Role = Role.CLIENT, plan: Plan | None = None
) -> dict[str, str]:
    return {"X-Api-Key": (await coordinator.accounts.create_key(account, role, plan)).secret}


async def jobs_of(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = await http.get("/v1/jobs", params={"limit": 1000}, headers=headers)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["jobs"]
    return found


async def templates_of(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = await http.get("/v1/templates", headers=headers)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def test_the_guides_template_makes_a_job_with_its_settings(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    created = await http.post("/v1/templates", json=GUIDE_TEMPLATE, headers=alice)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "inference_template" and created.json()["model"] == "gpt2"
    submitted = await http.post(
        "/v1/jobs", json={"template": "inference_template", "input": "Hello world"}, headers=alice
    )
    assert submitted.status_code == 201, submitted.text
    job = submitted.json()
    assert (job["type"], job["model"], job["priority"], job["timeout_seconds"]) == (
        "text-generation",
        "gpt2",
        "normal",
        3600,
    )
    assert job["template"] == "inference_template" and job["workflow"] is None
    status = (await http.get(f"/v1/jobs/{job['job_id']}", headers=alice)).json()
    assert status["template"] == "inference_template" and status["status"] == "pending"
    listed = await jobs_of(http, alice)
    assert [each["template"] for each in listed] == ["inference_template"]


async def test_what_the_submit_sends_wins_and_params_merge_by_key(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    template = {
        "name": "big",
        "type": "command",
        "model": "m1",
        "params": {"temperature": 0.2, "top_p": 0.9},
        "requirements": {"gpu_type": "a100", "gpu_count": 2, "min_vram_gb": 40},
        "priority": "high",
        "timeout_seconds": 120,
    }
    assert (await http.post("/v1/templates", json=template, headers=alice)).status_code == 201
    body = {
        "template": "big",
        "input": "echo hi",
        "model": "m2",
        "params": {"temperature": 0.8, "max_tokens": 10},
        "requirements": {"gpu_count": 4},
        "timeout_seconds": 60,
    }
    job = (await http.post("/v1/jobs", json=body, headers=alice)).json()
    assert job["type"] == "command" and job["model"] == "m2"
    assert job["params"] == {"temperature": 0.8, "top_p": 0.9, "max_tokens": 10}
    assert job["requirements"] == {"gpu_type": "a100", "gpu_count": 4, "min_vram_gb": 40, "miner_id": None}
    assert job["priority"] == "high" and job["timeout_seconds"] == 60
    # A default the submit states outright is a choice too: it wins over the template's value.
    job = (await http.post("/v1/jobs", json={"template": "big", "priority": "normal"}, headers=alice)).json()
    assert job["priority"] == "normal" and job["timeout_seconds"] == 120 and job["model"] == "m1"
    # Without a template, nothing changes: the coordinator's defaults.
    plain = (await http.post("/v1/jobs", json={"type": "command"}, headers=alice)).json()
    assert (plain["priority"], plain["timeout_seconds"], plain["requirements"]["gpu_count"]) == ("normal", 3600, 1)
    assert plain["template"] is None


async def test_list_show_replace_and_delete(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    for name in ("zeta", "alpha"):
        answer = await http.post("/v1/templates", json={"name": name, "type": "command"}, headers=alice)
        assert answer.status_code == 201, answer.text
    assert [each["name"] for each in await templates_of(http, alice)] == ["alpha", "zeta"]

    again = await http.post("/v1/templates", json={"name": "alpha", "type": "embedding"}, headers=alice)
    assert again.status_code == 409 and "already exists" in again.json()["message"]
    assert (await http.get("/v1/templates/alpha", headers=alice)).json()["type"] == "command"

    replaced = await http.post(
        "/v1/templates", json={"name": "alpha", "type": "embedding", "replace": True}, headers=alice
    )
    assert replaced.status_code == 200, replaced.text
    shown = (await http.get("/v1/templates/alpha", headers=alice)).json()
    assert shown["type"] == "embedding" and shown["created_at"] == (await templates_of(http, alice))[0]["created_at"]

    deleted = await http.delete("/v1/templates/alpha", headers=alice)
    assert deleted.status_code == 200 and deleted.json()["type"] == "embedding"
    assert [each["name"] for each in await templates_of(http, alice)] == ["zeta"]
    assert (await http.delete("/v1/templates/alpha", headers=alice)).status_code == 404
    gone = await http.post("/v1/jobs", json={"template": "alpha"}, headers=alice)
    assert gone.status_code == 404 and "'alpha'" in gone.json()["message"] and "zeta" in gone.json()["message"]


async def test_another_accounts_template_is_not_there(api: Api) -> None:
    http, coordinator = api
    alice, bob = await key(coordinator, "alice"), await key(coordinator, "bob")
    assert (
        await http.post("/v1/templates", json={"name": "secret", "type": "command"}, headers=alice)
    ).status_code == 201
    assert await templates_of(http, bob) == []
    assert (await http.get("/v1/templates/secret", headers=bob)).status_code == 404
    assert (await http.delete("/v1/templates/secret", headers=bob)).status_code == 404
    refused = await http.post("/v1/jobs", json={"template": "secret", "input": "x"}, headers=bob)
    assert refused.status_code == 404, refused.text
    assert "template 'secret' not found" in refused.json()["message"] and "no templates" in refused.json()["message"]
    assert await jobs_of(http, bob) == []
    # Bob may use the same name for his own.
    assert (
        await http.post("/v1/templates", json={"name": "secret", "type": "embedding"}, headers=bob)
    ).status_code == 201
    assert (await http.get("/v1/templates/secret", headers=alice)).json()["type"] == "command"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "type": "command"},
        {"name": "has space", "type": "command"},
        {"name": "a/b", "type": "command"},
        {"name": "name@1", "type": "command"},
        {"name": "-leading", "type": "command"},
        {"name": "x" * 65, "type": "command"},
        {"name": "ok", "type": "command", "priority": "whenever"},
        {"name": "ok", "type": "command", "timeout_seconds": 0},
        {"name": "ok", "type": "command", "requirements": {"gpu_count": 0}},
        {"name": "ok", "type": "command", "input": "templates hold no input"},
        {"name": "ok", "type": "command", "workflow": "bad ref"},
        {"name": "ok"},  # nothing in it
    ],
)
async def test_a_bad_template_is_422_and_stores_nothing(api: Api, body: dict[str, Any]) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    answer = await http.post("/v1/templates", json=body, headers=alice)
    assert answer.status_code == 422, answer.text
    assert answer.json()["message"]
    assert await templates_of(http, alice) == []


async def test_bad_names_in_paths_and_submits_are_refused(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    assert (await http.get("/v1/templates/" + "x" * 65, headers=alice)).status_code == 422
    assert (await http.get("/v1/templates/bad%20name", headers=alice)).status_code == 422
    for template in ("", "bad name", "x" * 65):
        refused = await http.post("/v1/jobs", json={"template": template}, headers=alice)
        assert refused.status_code == 422 and "template" in refused.json()["message"], template
    assert await jobs_of(http, alice) == []


async def test_oversized_params_are_413(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    big = {"name": "big", "type": "command", "params": {"blob": "x" * MAX_PRESET_PARAMS_BYTES}}
    answer = await http.post("/v1/templates", json=big, headers=alice)
    assert answer.status_code == 413 and "params" in answer.json()["message"]
    assert await templates_of(http, alice) == []


async def test_an_account_keeps_at_most_its_cap_of_templates(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice", plan=Plan.ENTERPRISE)  # its rate limit is not what is tested here
    for number in range(MAX_TEMPLATES_PER_ACCOUNT):
        answer = await http.post("/v1/templates", json={"name": f"t{number}", "type": "command"}, headers=alice)
        assert answer.status_code == 201, answer.text
    over = await http.post("/v1/templates", json={"name": "one-more", "type": "command"}, headers=alice)
    assert over.status_code == 409 and f"{MAX_TEMPLATES_PER_ACCOUNT} templates" in over.json()["message"]
    assert len(await templates_of(http, alice)) == MAX_TEMPLATES_PER_ACCOUNT
    # Replacing one is not a new one; after a delete there is room again.
    replaced = await http.post("/v1/templates", json={"name": "t0", "model": "m", "replace": True}, headers=alice)
    assert replaced.status_code == 200, replaced.text
    assert (await http.delete("/v1/templates/t1", headers=alice)).status_code == 200
    assert (
        await http.post("/v1/templates", json={"name": "one-more", "type": "command"}, headers=alice)
    ).status_code == 201


async def test_a_refused_submit_with_a_template_holds_nothing(api: Api) -> None:
    """A template whose job cannot be submitted (no type or model; a hold the balance cannot cover) leaves no
    job and no hold behind."""
    http, coordinator = api
    alice = await key(coordinator, "alice")
    before = (await http.get("/v1/billing/balance", headers=alice)).json()
    costly = {"name": "costly", "type": "command", "requirements": {"gpu_type": "a100", "gpu_count": 64}}
    assert (
        await http.post("/v1/templates", json={**costly, "timeout_seconds": 604800}, headers=alice)
    ).status_code == 201
    assert (
        await http.post("/v1/templates", json={"name": "typeless", "priority": "high"}, headers=alice)
    ).status_code == 201
    refused = await http.post("/v1/jobs", json={"template": "costly"}, headers=alice)
    assert refused.status_code == 402, refused.text
    refused = await http.post("/v1/jobs", json={"template": "typeless"}, headers=alice)
    assert refused.status_code == 422 and "type" in refused.json()["message"]
    assert await jobs_of(http, alice) == []
    assert (await http.get("/v1/billing/balance", headers=alice)).json() == before


async def test_batch_items_take_templates_and_a_missing_one_names_its_item(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    assert (await http.post("/v1/templates", json=GUIDE_TEMPLATE, headers=alice)).status_code == 201
    items = [
        {"template": "inference_template", "input": "one"},
        {"template": "inference_template", "input": "two", "priority": "high"},
        {"type": "command", "input": "echo three"},
    ]
    answer = await http.post("/v1/jobs/batch", json={"jobs": items}, headers=alice)
    assert answer.status_code == 201, answer.text
    made = [result["job"] for result in answer.json()["jobs"]]
    assert [(job["model"], job["priority"], job["template"]) for job in made] == [
        ("gpt2", "normal", "inference_template"),
        ("gpt2", "high", "inference_template"),
        (None, "normal", None),
    ]
    items[2] = {"template": "nope", "input": "x"}
    refused = await http.post("/v1/jobs/batch", json={"jobs": items}, headers=alice)
    assert refused.status_code == 404 and refused.json()["item"] == 2, refused.text
    assert "template 'nope'" in refused.json()["message"]
    assert len(await jobs_of(http, alice)) == 3


async def test_an_idempotent_replay_answers_the_job_even_after_the_template_changed(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    assert (await http.post("/v1/templates", json=GUIDE_TEMPLATE, headers=alice)).status_code == 201
    body = {"template": "inference_template", "input": "Hello"}
    first = await http.post("/v1/jobs", json=body, headers={**alice, "Idempotency-Key": "k1"})
    assert first.status_code == 201
    changed = {**GUIDE_TEMPLATE, "model": "llama", "replace": True}
    assert (await http.post("/v1/templates", json=changed, headers=alice)).status_code == 200
    again = await http.post("/v1/jobs", json=body, headers={**alice, "Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
    assert again.json()["model"] == "gpt2"
    fresh = await http.post("/v1/jobs", json=body, headers=alice)
    assert fresh.json()["model"] == "llama"


async def test_a_miner_key_may_not_touch_templates(api: Api) -> None:
    http, coordinator = api
    miner = await key(coordinator, "m", Role.MINER)
    assert (await http.get("/v1/templates", headers=miner)).status_code == 403
    assert (await http.post("/v1/templates", json={"name": "x", "type": "command"}, headers=miner)).status_code == 403
    assert (await http.get("/v1/templates")).status_code == 401


def test_a_request_that_names_no_preset_hashes_as_it_did_before_presets() -> None:
    """An Idempotency-Key retried across an upgrade (or between replicas of two versions) still matches: the
    digest is the one the coordinator computed before templates and workflows existed."""
    request = SubmitJobRequest.model_validate({"type": "command", "input": "echo hi", "priority": "high"})
    assert _request_hash(request) == "58a42d374047624fc12caaa44ebbf6b1d0ce9f800f720651b37404aa233ab933"
    assert _request_hash(request.model_copy(update={"template": "t"})) != _request_hash(request)
