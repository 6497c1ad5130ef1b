"""The HTTP API through the real app: auth, roles, tenancy, validation, size limits — and that a refused
request changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.storage.interfaces import JobFilter
from aitbc.wiring import Coordinator
from tests.support.protocol_miner import HttpMiner

Api = tuple[httpx.AsyncClient, Coordinator]


async def keys(coordinator: Coordinator) -> dict[str, str]:
    made = {}
    for name, account, role in (
        ("alice", "alice", Role.CLIENT),
        ("bob", "bob", Role.CLIENT),
        ("miner", "farm", Role.MINER),
        ("admin", "ops", Role.ADMIN),
    ):
        made[name] = (await coordinator.accounts.create_key(account, role)).secret
    return made


async def snapshot(coordinator: Coordinator) -> list[tuple[Any, ...]]:
    """Every job and its last event: what a refused request must leave untouched."""
    page = await coordinator.job_store.list_jobs(JobFilter(), 1000, None)
    return [(j.id, j.status, j.progress, j.lease_id, j.updated_at, j.attempt) for j in page.jobs]


def h(key: str) -> dict[str, str]:
    return {"X-Api-Key": key}


async def test_submit_returns_the_status_object(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    body = {"type": "command", "input": "echo hi", "priority": "high", "requirements": {"gpu_count": 1}}
    response = await http.post("/v1/jobs", json=body, headers=h(k["alice"]))
    assert response.status_code == 201, response.text
    job = response.json()
    for field in (
        "job_id",
        "status",
        "progress",
        "miner_id",
        "created_at",
        "started_at",
        "estimated_completion",
        "completed_at",
        "type",
        "model",
        "priority",
        "error",
    ):
        assert field in job
    assert job["status"] == "pending" and job["priority"] == "high"
    assert job["created_at"].endswith("Z")
    read = await http.get(f"/v1/jobs/{job['job_id']}", headers=h(k["alice"]))
    assert read.status_code == 200 and read.json()["job_id"] == job["job_id"]
    assert read.json()["waiting_for"] == "no miner is connected"


async def test_seed_submit_body_is_accepted(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    seed = {
        "model": "gpt2",
        "input": "What is AI?",
        "output_config": {"destination": "local", "format": "json"},
        "requirements": {"gpu_type": "v100", "gpu_count": 1, "min_vram_gb": 16},
        "priority": "normal",
        "timeout_seconds": 3600,
    }
    response = await http.post("/v1/jobs", json=seed, headers=h(k["alice"]))
    assert response.status_code == 201, response.text
    assert response.json()["type"] == "text-generation"
    assert response.json()["requirements"] == {
        "gpu_type": "v100",
        "gpu_count": 1,
        "min_vram_gb": 16.0,
        "miner_id": None,
    }


async def test_idempotency_key_header(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    headers = {**h(k["alice"]), "Idempotency-Key": "abc"}
    first = await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers=headers)
    second = await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["job_id"] == second.json()["job_id"]
    clash = await http.post("/v1/jobs", json={"type": "command", "input": "y"}, headers=headers)
    assert clash.status_code == 409 and "Idempotency-Key" in clash.json()["message"]
    assert len(await snapshot(coordinator)) == 1


async def test_auth_roles_and_tenancy_refusals_change_nothing(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    job_id = (await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers=h(k["alice"]))).json()[
        "job_id"
    ]
    before = await snapshot(coordinator)
    refusals = [
        (await http.get(f"/v1/jobs/{job_id}"), 401),
        (await http.get(f"/v1/jobs/{job_id}", headers=h("aitbc_not-a-real-key")), 401),
        (await http.post("/v1/jobs", json={"type": "command"}), 401),
        (await http.get(f"/v1/jobs/{job_id}", headers=h(k["bob"])), 404),
        (await http.post(f"/v1/jobs/{job_id}/cancel", headers=h(k["bob"])), 404),
        (await http.delete(f"/v1/jobs/{job_id}", headers=h(k["bob"])), 404),
        (await http.get("/v1/jobs/job_doesnotexist0000000", headers=h(k["alice"])), 404),
        (await http.post("/v1/jobs", json={"type": "command"}, headers=h(k["miner"])), 403),
        (
            await http.post(
                "/v1/miners/register",
                json={"name": "x", "runtimes": ["command"], "public_key": "A" * 44},
                headers=h(k["alice"]),
            ),
            403,
        ),
        (await http.get("/v1/admin/keys", headers=h(k["alice"])), 403),
        (await http.post("/v1/admin/keys", json={"name": "eve", "role": "admin"}, headers=h(k["alice"])), 403),
    ]
    for response, expected in refusals:
        assert response.status_code == expected, (response.request.url, response.text)
        assert response.json()["message"]
    bob_list = await http.get("/v1/jobs", headers=h(k["bob"]))
    assert bob_list.json()["jobs"] == [] and bob_list.json()["total"] == 0
    assert await snapshot(coordinator) == before
    assert (await http.get(f"/v1/jobs/{job_id}", headers=h(k["admin"]))).status_code == 200


async def test_revoked_key_stops_working(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    listed = await http.get("/v1/admin/keys", params={"account": "alice"}, headers=h(k["admin"]))
    (alice_key,) = listed.json()
    assert "api_key" not in alice_key and alice_key["prefix"] == k["alice"][:12]
    assert (await http.delete(f"/v1/admin/keys/{alice_key['key_id']}", headers=h(k["admin"]))).status_code == 200
    refused = await http.get("/v1/jobs", headers=h(k["alice"]))
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'{"type": "command", "input": "x"', "application/json"),
        (b'{"type": "command", "priority": "whenever"}', "application/json"),
        (b'{"type": "command", "timeout_seconds": "soon"}', "application/json"),
        (b'{"type": "command", "timeout_seconds": -5}', "application/json"),
        (b'{"type": "command", "requirements": {"gpu_count": 0}}', "application/json"),
        (b'{"type": "command", "requirements": {"gpu_type": "../etc"}}', "application/json"),
        (b'{"type": "command", "surprise": 1}', "application/json"),
        (b'{"type": 42}', "application/json"),
        (b'["type", "command"]', "application/json"),
        (b"", "application/json"),
        (b'{"input": "no type and no model"}', "application/json"),
    ],
)
async def test_malformed_submit_is_422_and_stores_nothing(api: Api, body: bytes, content_type: str) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    response = await http.post("/v1/jobs", content=body, headers={**h(k["alice"]), "Content-Type": content_type})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input" and response.json()["message"]
    assert await snapshot(coordinator) == []


async def test_oversized_input_is_413_and_stores_nothing(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    limit = coordinator.settings.max_inline_input_bytes
    just_over = {"type": "command", "input": "x" * limit}
    response = await http.post("/v1/jobs", json=just_over, headers=h(k["alice"]))
    assert response.status_code == 413 and "POST /v1/files" in response.json()["message"]
    huge = b'{"type": "command", "input": "' + b"y" * (limit * 3) + b'"}'
    response = await http.post("/v1/jobs", content=huge, headers={**h(k["alice"]), "Content-Type": "application/json"})
    assert response.status_code == 413

    async def chunked() -> Any:
        yield b'{"type": "command", "input": "'
        for _ in range(3):
            yield b"z" * limit
        yield b'"}'

    response = await http.post(
        "/v1/jobs", content=chunked(), headers={**h(k["alice"]), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert await snapshot(coordinator) == []


async def test_input_file_upload_and_reference(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    uploaded = await http.post(
        "/v1/files", params={"name": "../../data.txt"}, content=b"line one\nline two\n", headers=h(k["alice"])
    )
    assert uploaded.status_code == 201, uploaded.text
    file = uploaded.json()
    assert file["name"] == "data.txt" and file["size"] == 18
    job = await http.post("/v1/jobs", json={"type": "command", "input": file["file_id"]}, headers=h(k["alice"]))
    assert job.status_code == 201
    stolen = await http.post(
        "/v1/jobs", json={"type": "command", "input_file_id": file["file_id"]}, headers=h(k["bob"])
    )
    assert stolen.status_code == 404
    miner = HttpMiner(http, k["miner"])
    await miner.register()
    (assignment,) = await miner.claim()
    assert assignment["input_file"]["sha256"] == file["sha256"]
    body = await http.get(
        f"/v1/miners/{miner.miner_id}/jobs/{assignment['job_id']}/input",
        params={"lease_id": assignment["lease_id"]},
        headers=miner.headers,
    )
    assert body.content == b"line one\nline two\n"


async def test_input_file_over_the_limit_is_413_and_kept_nowhere(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    object.__setattr__(coordinator.settings, "max_input_file_bytes", 1000)
    response = await http.post("/v1/files", content=b"a" * 5000, headers=h(k["alice"]))
    assert response.status_code == 413
    leftovers = [p for p in coordinator.settings.blob_dir.rglob("*") if p.is_file()]
    assert leftovers == []


async def test_list_filters_and_history(api: Api, clock: ManualClock) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    ids = []
    for _ in range(3):
        ids.append(
            (await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers=h(k["alice"]))).json()[
                "job_id"
            ]
        )
        clock.advance(86400)
    await http.post(f"/v1/jobs/{ids[0]}/cancel", headers=h(k["alice"]))
    listed = (await http.get("/v1/jobs", params={"status": "pending", "limit": 1}, headers=h(k["alice"]))).json()
    assert listed["total"] == 2 and listed["has_more"] is True and len(listed["jobs"]) == 1
    assert listed["jobs"][0]["job_id"] == ids[2]
    rest = (
        await http.get(
            "/v1/jobs", params={"status": "pending", "limit": 1, "cursor": listed["next_cursor"]}, headers=h(k["alice"])
        )
    ).json()
    assert [j["job_id"] for j in rest["jobs"]] == [ids[1]] and rest["has_more"] is False
    day = clock.now().date()
    history = (
        await http.get(
            "/v1/jobs/history",
            params={"from": str(day.replace(day=day.day - 3)), "to": str(day.replace(day=day.day - 3))},
            headers=h(k["alice"]),
        )
    ).json()
    assert [j["job_id"] for j in history["jobs"]] == [ids[0]]
    recent = (await http.get("/v1/jobs", params={"days": 2}, headers=h(k["alice"]))).json()
    assert {j["job_id"] for j in recent["jobs"]} == {ids[1], ids[2]}
    submitted = (await http.get("/v1/jobs", params={"status": "submitted"}, headers=h(k["alice"]))).json()
    assert {j["job_id"] for j in submitted["jobs"]} == {ids[1], ids[2]}
    finished = (await http.get("/v1/jobs", params={"status": "finished"}, headers=h(k["alice"]))).json()
    assert [j["job_id"] for j in finished["jobs"]] == [ids[0]]
    bad = await http.get("/v1/jobs", params={"status": "sleeping"}, headers=h(k["alice"]))
    assert bad.status_code == 422 and "sleeping" in bad.json()["message"]
    bad = await http.get("/v1/jobs", params={"from": "yesterday"}, headers=h(k["alice"]))
    assert bad.status_code == 422
    bad = await http.get("/v1/jobs", params={"cursor": "!!!"}, headers=h(k["alice"]))
    assert bad.status_code == 422


async def test_cancel_outcomes_over_http(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    miner = HttpMiner(http, k["miner"])
    await miner.register()
    pending = (await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers=h(k["alice"]))).json()
    response = await http.delete(f"/v1/jobs/{pending['job_id']}", headers=h(k["alice"]))
    assert response.status_code == 200 and response.json()["outcome"] == "canceled"
    running = (await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers=h(k["alice"]))).json()
    (assignment,) = await miner.claim()
    assert (await miner.call("start", running["job_id"], {"lease_id": assignment["lease_id"]})).status_code == 200
    response = await http.post(f"/v1/jobs/{running['job_id']}/cancel", headers=h(k["alice"]))
    assert response.status_code == 202 and response.json()["outcome"] == "canceling"
    progress = await miner.call("progress", running["job_id"], {"lease_id": assignment["lease_id"], "progress": 5})
    assert progress.json()["cancel"] is True
    finished = await miner.finish(
        running["job_id"],
        assignment["lease_id"],
        {"logs/stdout.log": b"partial\n"},
        verb="fail",
        reason="runtime_error",
        message="killed",
    )
    assert finished.status_code == 200 and finished.json()["status"] == "canceled"
    again = await http.post(f"/v1/jobs/{running['job_id']}/cancel", headers=h(k["alice"]))
    assert again.status_code == 409
    assert again.json()["outcome"] == "failed" and again.json()["reason"] == "already_canceled"


async def test_miner_protocol_hostile_input(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    miner = HttpMiner(http, k["miner"])
    await miner.register()
    job = (await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers=h(k["alice"]))).json()
    (assignment,) = await miner.claim()
    lease = assignment["lease_id"]
    for path in ("../escape.txt", "artifacts/../../x", "/etc/passwd", "random.txt", "artifacts/a\\b"):
        response = await miner.upload(job["job_id"], lease, path, b"data")
        assert response.status_code in (404, 422), (path, response.status_code)
    assert (await miner.upload(job["job_id"], "lease_wrong000000000000", "result.txt", b"x")).status_code == 409
    good = {"result.txt": b"hello"}
    await miner.upload(job["job_id"], lease, "result.txt", b"hello")
    manifest, signature = miner.manifest(job["job_id"], {"result.txt": b"hellO"})
    bad_hash = await miner.call(
        "complete", job["job_id"], {"lease_id": lease, "manifest": manifest, "signature": signature}
    )
    assert bad_hash.status_code == 422 and "result.txt" in bad_hash.json()["message"]
    manifest, _ = miner.manifest(job["job_id"], good)
    forged = await miner.call(
        "complete", job["job_id"], {"lease_id": lease, "manifest": manifest, "signature": "A" * 88}
    )
    assert forged.status_code == 422 and "signature" in forged.json()["message"]
    manifest, signature = miner.manifest(job["job_id"], {**good, "artifacts/missing.bin": b"zz"})
    missing = await miner.call(
        "complete", job["job_id"], {"lease_id": lease, "manifest": manifest, "signature": signature}
    )
    assert missing.status_code == 422 and "artifacts/missing.bin" in missing.json()["message"]
    state = (await http.get(f"/v1/jobs/{job['job_id']}", headers=h(k["alice"]))).json()
    assert state["status"] == "assigned" and state["results"] == "none"
    ok = await miner.finish(job["job_id"], lease, good)
    assert ok.status_code == 200 and ok.json()["status"] == "completed"
    other_miner = HttpMiner(http, (await coordinator.accounts.create_key("farm2", Role.MINER)).secret, name="m2")
    await other_miner.register()
    stolen = await other_miner.call("progress", job["job_id"], {"lease_id": lease, "progress": 1})
    assert stolen.status_code in (404, 409)


async def test_admin_keys_over_http(api: Api) -> None:
    http, coordinator = api
    k = await keys(coordinator)
    created = await http.post(
        "/v1/admin/keys", json={"name": "carol", "role": "client", "plan": "pro"}, headers=h(k["admin"])
    )
    assert created.status_code == 201
    body = created.json()
    assert body["api_key"].startswith("aitbc_") and body["plan"] == "pro" and body["account"] == "carol"
    assert (await http.get("/v1/jobs", headers=h(body["api_key"]))).status_code == 200
    again = await http.post("/v1/admin/keys", json={"name": "carol", "role": "miner"}, headers=h(k["admin"]))
    assert again.json()["account_id"] == body["account_id"] and again.json()["plan"] == "pro"
    accounts = (await http.get("/v1/admin/accounts", headers=h(k["admin"]))).json()
    assert {a["name"] for a in accounts} >= {"alice", "bob", "carol"}
    plan = await http.post("/v1/admin/accounts/carol/plan", json={"plan": "enterprise"}, headers=h(k["admin"]))
    assert plan.json()["plan"] == "enterprise"
    missing = await http.post("/v1/admin/accounts/nobody/plan", json={"plan": "pro"}, headers=h(k["admin"]))
    assert missing.status_code == 404
    bad_role = await http.post("/v1/admin/keys", json={"name": "x", "role": "root"}, headers=h(k["admin"]))
    assert bad_role.status_code == 422
