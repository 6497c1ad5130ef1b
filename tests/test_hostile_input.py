"""Hostile input at the API, on SQLite and PostgreSQL: text that is not valid Unicode or holds NUL, deep JSON
nesting, dates and day counts that overflow, absurd numbers from a miner, and another miner's lease or job.
Each gets a 4xx with a message, and nothing is stored or changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from aitbc.api.app import create_app
from aitbc.api.checked_route import CheckedRoute
from aitbc.domain.job import FailureReason, JobStatus
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.wiring import Coordinator
from tests.helpers import HttpMiner, job_request, principal

Api = tuple[httpx.AsyncClient, Coordinator]


async def job_count(coordinator: Coordinator) -> int:
    from aitbc.storage.sql.tables import jobs

    async with coordinator.database.read() as connection:
        return int((await connection.execute(select(func.count()).select_from(jobs))).scalar_one())


async def client_headers(coordinator: Coordinator, account: str = "alice") -> dict[str, str]:
    return {"X-Api-Key": (await coordinator.accounts.create_key(account, Role.CLIENT)).secret}


async def started_miner(http: httpx.AsyncClient, coordinator: Coordinator, account: str, name: str) -> HttpMiner:
    miner = HttpMiner(http, (await coordinator.accounts.create_key(account, Role.MINER)).secret, name=name)
    await miner.register()
    return miner


async def running_job(http: httpx.AsyncClient, coordinator: Coordinator, miner: HttpMiner) -> tuple[str, str]:
    """A job of a fresh client, claimed and started by `miner`: (job id, lease id)."""
    headers = await client_headers(coordinator, f"client-of-{miner.name}")
    submitted = await http.post("/v1/jobs", json={"type": "command", "input": "echo hi"}, headers=headers)
    assert submitted.status_code == 201, submitted.text
    [claimed] = await miner.claim()
    started = await miner.call("start", claimed["job_id"], {"lease_id": claimed["lease_id"]})
    assert started.status_code == 200, started.text
    return claimed["job_id"], claimed["lease_id"]


def assert_refused(response: httpx.Response, *statuses: int) -> None:
    allowed = statuses or (422,)
    assert response.status_code in allowed, (response.status_code, response.text)
    body = response.json()
    assert body["message"], body


# -- text that is not valid Unicode, and NUL -------------------------------------------------------------

POISON_BODIES = [
    pytest.param(b'{"type": "command", "input": "\\ud800"}', id="escaped-lone-surrogate"),
    pytest.param(b'{"type": "command", "input": "\xed\xa0\x80"}', id="raw-lone-surrogate"),
    pytest.param(b'{"type": "command", "input": "\xff"}', id="not-utf8"),
    pytest.param(b'{"type": "command", "input": {"a": ["\\udfff"]}}', id="nested-surrogate"),
    pytest.param(b'{"type": "command", "input": "x", "params": {"\\ud83d": 1}}', id="surrogate-key"),
    pytest.param(b'{"type": "command", "input": "echo \\u0000"}', id="nul-in-input"),
    pytest.param(b'{"type": "command", "input": "x", "model": "m\\u0000"}', id="nul-in-model"),
    pytest.param(b'{"type": "command", "input": "x", "params": {"k\\u0000": "v"}}', id="nul-in-key"),
    pytest.param(b'{"type": "command", "input": [NaN]}', id="nan"),
    pytest.param(b'{"type": "command", "input": [1e999]}', id="infinite-number"),
]


@pytest.mark.parametrize("body", POISON_BODIES)
async def test_text_that_cannot_be_stored_or_sent_is_refused(api: Api, body: bytes) -> None:
    http, coordinator = api
    headers = {**await client_headers(coordinator), "Content-Type": "application/json"}
    response = await http.post("/v1/jobs", content=body, headers=headers)
    assert_refused(response)
    assert await job_count(coordinator) == 0


@pytest.mark.parametrize("depth", [64, 400, 900, 5000, 100_000])
async def test_deep_nesting_is_refused(api: Api, depth: int) -> None:
    http, coordinator = api
    headers = {**await client_headers(coordinator), "Content-Type": "application/json"}
    nested = "[" * depth + "]" * depth
    body = ('{"type": "command", "input": ' + nested + "}").encode()
    response = await http.post("/v1/jobs", content=body, headers=headers)
    assert_refused(response, 413, 422)
    assert "nest" in response.json()["message"]
    assert await job_count(coordinator) == 0


async def test_reasonable_nesting_is_accepted(api: Api) -> None:
    http, coordinator = api
    headers = await client_headers(coordinator)
    nested: Any = "leaf"
    for _ in range(12):
        nested = {"level": [nested]}
    response = await http.post("/v1/jobs", json={"type": "command", "input": nested}, headers=headers)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files?name=in%00put",
        "/v1/jobs?cursor=%00",
        "/v1/jobs/job_%00",
        "/v1/jobs/job_%00/cancel",
    ],
)
async def test_nul_in_the_url_is_refused(api: Api, path: str) -> None:
    http, coordinator = api
    headers = await client_headers(coordinator)
    method = "POST" if path.startswith("/v1/files") or path.endswith("/cancel") else "GET"
    response = await http.request(method, path, content=b"data", headers=headers)
    assert_refused(response, 404, 422)
    assert await job_count(coordinator) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_poison_job_already_stored_never_breaks_a_claim(api: Api) -> None:
    """A job stored before text was checked at the API (SQLite keeps a lone surrogate; PostgreSQL cannot) must
    not make the claim that picks it up fail after it committed: the other tenants' jobs in that claim would be
    leased to a miner that never heard of them. The claim sends what it can and fails the poison job."""
    http, coordinator = api
    poisoner = await principal(coordinator, "mallory", Role.CLIENT)
    poison = await coordinator.jobs.submit(poisoner, job_request(input="\ud800"))
    victim = await http.post(
        "/v1/jobs", json={"type": "command", "input": "echo ok"}, headers=await client_headers(coordinator)
    )
    assert victim.status_code == 201, victim.text
    miner = await started_miner(http, coordinator, "farm", "m1")
    claimed = await miner.claim(max_jobs=5)
    assert [job["job_id"] for job in claimed] == [victim.json()["job_id"]]
    failed = await coordinator.jobs.get(poisoner, poison.job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.failure_reason is FailureReason.INVALID_INPUT
    assert failed.cost == 0


def test_every_route_passes_the_text_gate(tmp_path: Path) -> None:
    """A router added later without the checked route class would let unchecked text in again."""
    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'a.db'}"))
    http_routes = [route for route in app.routes if isinstance(route, APIRoute)]
    assert http_routes
    unchecked = [route.path for route in http_routes if not isinstance(route, CheckedRoute)]
    assert unchecked == []
