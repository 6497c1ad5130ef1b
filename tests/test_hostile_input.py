"""Hostile input at the API, on SQLite and PostgreSQL: text that is not valid Unicode or holds NUL, deep JSON
nesting, dates and day counts that overflow, absurd numbers from a miner, and another miner's lease or job.
Each gets a 4xx with a message, and nothing is stored or changed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websocket
from fastapi.routing import APIRoute
from sqlalchemy import Connection, func, select
from typer.testing import CliRunner

from aitbc.api.app import create_app
from aitbc.api.checked_route import CheckedRoute
from aitbc.cli.main import app as cli_app
from aitbc.domain.clock import ManualClock
from aitbc.domain.job import FailureReason, Job, JobStatus
from aitbc.domain.manifest import PackagePaths, sign
from aitbc.domain.plans import Role
from aitbc.miner.package import PackageLayout
from aitbc.miner.reporter import sendable
from aitbc.settings import Settings
from aitbc.wiring import Coordinator, coordinator_session
from tests.helpers import job_request, principal
from tests.support.protocol_miner import HttpMiner
from tests.support.served import served_in_thread

Api = tuple[httpx.AsyncClient, Coordinator]


async def job_count(coordinator: Coordinator) -> int:
    from aitbc.storage.sql.tables import jobs

    return await coordinator.database.read(
        lambda connection: int(connection.execute(select(func.count()).select_from(jobs)).scalar_one())
    )


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


async def stored_job(coordinator: Coordinator, job_id: str) -> Job:
    job = await coordinator.job_store.get_job(job_id)
    assert job is not None
    return job


async def absent_job_answer(miner: HttpMiner, verb: str, job_id: str, body: dict[str, Any]) -> Any:
    """What `miner` is told for a job that does not exist, worded as if about `job_id`: another tenant's job
    must get exactly this answer, so that nothing tells the two apart."""
    absent = "job_" + "0" * (len(job_id) - len("job_"))
    response = await miner.call(verb, absent, body)
    assert response.status_code == 404, response.text
    return json.loads(response.text.replace(absent, job_id))


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


# -- dates, day counts and numbers out of range -----------------------------------------------------------

MOMENTS = [
    ("/v1/jobs", "to", "9999-12-31"),
    ("/v1/jobs", "from", "0001-01-01T00:00:00+01:00"),
    ("/v1/jobs/history", "to", "9999-12-31T23:00:00-05:00"),
    ("/v1/jobs/export", "to", "9999-12-31"),
    ("/v1/jobs/export", "from", "0001-01-01"),
    ("/v1/billing/ledger", "to", "9999-12-31"),
    ("/v1/billing/ledger", "from", "9999-12-31T23:59:59Z"),
]


@pytest.mark.parametrize(("route", "name", "moment"), MOMENTS)
async def test_moments_out_of_range_are_refused(api: Api, route: str, name: str, moment: str) -> None:
    http, coordinator = api
    response = await http.get(route, params={name: moment}, headers=await client_headers(coordinator))
    assert_refused(response)
    assert name in response.json()["message"]


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/stats", "/v1/jobs/export"])
@pytest.mark.parametrize("days", [10**9, 10**6, 2**63, 0, -1])
async def test_day_counts_out_of_range_are_refused(api: Api, route: str, days: int) -> None:
    http, coordinator = api
    response = await http.get(route, params={"days": days}, headers=await client_headers(coordinator))
    assert_refused(response)
    assert "days" in response.json()["message"]


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/stats", "/v1/jobs/export"])
async def test_a_century_of_days_is_accepted(api: Api, route: str) -> None:
    http, coordinator = api
    response = await http.get(route, params={"days": 36500}, headers=await client_headers(coordinator))
    assert response.status_code == 200, response.text


async def test_the_documented_maximum_ledger_page_is_served(api: Api) -> None:
    http, coordinator = api
    headers = await client_headers(coordinator)
    await coordinator.billing.grant("alice", Decimal(5), "test credit")
    response = await http.get("/v1/billing/ledger", params={"limit": 10000}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["has_more"] is False
    assert len(response.json()["entries"]) >= 1
    assert_refused(await http.get("/v1/billing/ledger", params={"limit": 10001}, headers=headers))


@pytest.mark.parametrize("verb", ["complete", "fail"])
@pytest.mark.parametrize("exit_code", [2**70, -(2**70), 2**31])
async def test_an_absurd_exit_code_is_refused(api: Api, verb: str, exit_code: int) -> None:
    http, coordinator = api
    miner = await started_miner(http, coordinator, "farm", "m1")
    job_id, lease_id = await running_job(http, coordinator, miner)
    body: dict[str, Any] = {"lease_id": lease_id, "exit_code": exit_code}
    if verb == "fail":
        body.update(reason="runtime_error", message="boom")
    assert_refused(await miner.call(verb, job_id, body))
    job = await stored_job(coordinator, job_id)
    assert job.status is JobStatus.RUNNING
    assert job.exit_code is None


@pytest.mark.parametrize(
    "estimate",
    ["2026-06-01T00:00:00", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"],
)
async def test_an_estimate_without_a_zone_or_out_of_range_is_refused(api: Api, estimate: str) -> None:
    http, coordinator = api
    miner = await started_miner(http, coordinator, "farm", "m1")
    job_id, lease_id = await running_job(http, coordinator, miner)
    before = await stored_job(coordinator, job_id)
    body = {"lease_id": lease_id, "progress": 50, "estimated_completion": estimate}
    response = await miner.call("progress", job_id, body)
    assert_refused(response)
    assert "estimated_completion" in response.json()["message"]
    after = await stored_job(coordinator, job_id)
    assert (after.progress, after.estimated_completion, after.lease_expires_at) == (
        before.progress,
        before.estimated_completion,
        before.lease_expires_at,
    )


# -- the miner API: ownership before anything else -----------------------------------------------------


async def test_progress_with_another_miners_lease_is_not_found(api: Api, clock: ManualClock) -> None:
    http, coordinator = api
    owner = await started_miner(http, coordinator, "farm-a", "a1")
    job_id, lease_id = await running_job(http, coordinator, owner)
    before = await stored_job(coordinator, job_id)
    clock.advance(30)
    for intruder in (
        await started_miner(http, coordinator, "farm-b", "b1"),
        await started_miner(http, coordinator, "farm-a", "a2"),
    ):
        body = {"lease_id": lease_id, "progress": 99, "message": "mine"}
        response = await intruder.call("progress", job_id, body)
        assert_refused(response, 404)
        assert response.json() == await absent_job_answer(intruder, "progress", job_id, body)
    after = await stored_job(coordinator, job_id)
    assert (after.lease_expires_at, after.progress, after.progress_message) == (
        before.lease_expires_at,
        before.progress,
        before.progress_message,
    )
    owned = await owner.call("progress", job_id, {"lease_id": lease_id, "progress": 40})
    assert owned.status_code == 200, owned.text
    assert (await stored_job(coordinator, job_id)).lease_expires_at > before.lease_expires_at


@pytest.mark.parametrize("verb", ["complete", "fail"])
async def test_a_finish_replayed_by_another_account_is_not_found(api: Api, verb: str) -> None:
    http, coordinator = api
    owner = await started_miner(http, coordinator, "farm-a", "a1")
    job_id, lease_id = await running_job(http, coordinator, owner)
    body: dict[str, Any] = {"lease_id": lease_id, "exit_code": 0}
    if verb == "fail":
        body.update(reason="runtime_error", message="boom")
    first = await owner.call(verb, job_id, body)
    assert first.status_code == 200, first.text
    replay = await owner.call(verb, job_id, body)
    assert replay.status_code == 200, replay.text  # the owner's retry still gets the first answer
    intruder = await started_miner(http, coordinator, "farm-b", "b1")
    stolen_id = HttpMiner(http, intruder.api_key, miner_id=owner.miner_id)
    for miner in (intruder, stolen_id):
        assert_refused(await miner.call(verb, job_id, body), 404)
    sibling = await started_miner(http, coordinator, "farm-a", "a2")
    assert_refused(await sibling.call(verb, job_id, body), 404)


@pytest.mark.parametrize("verb", ["start", "progress", "logs", "complete", "fail"])
async def test_a_wrong_lease_on_another_tenants_job_says_nothing_about_it(api: Api, verb: str) -> None:
    http, coordinator = api
    owner = await started_miner(http, coordinator, "farm-a", "a1")
    job_id, _lease = await running_job(http, coordinator, owner)
    intruder = await started_miner(http, coordinator, "farm-b", "b1")
    body: dict[str, Any] = {"lease_id": "lease_wrong"}
    if verb == "logs":
        body["lines"] = [{"line": "x"}]
    response = await intruder.call(verb, job_id, body)
    assert_refused(response, 404)
    assert response.json() == await absent_job_answer(intruder, verb, job_id, body)
    assert (await stored_job(coordinator, job_id)).status is JobStatus.RUNNING


# -- package paths that tools downstream misread ----------------------------------------------------------

MISREAD_NAMES = [
    pytest.param("artifacts/a\u2028b.txt", id="line-separator"),
    pytest.param("artifacts/a\u2029b.txt", id="paragraph-separator"),
    pytest.param("artifacts/a\u0085b.txt", id="next-line"),
    pytest.param("artifacts/\u202egnp.exe", id="right-to-left-override"),
    pytest.param("artifacts/\u2066x\u2069.txt", id="bidi-isolate"),
    pytest.param("artifacts/a\u200bb.txt", id="zero-width-space"),
    pytest.param("artifacts/\ufeffbom.txt", id="byte-order-mark"),
]


async def result_file_rows(coordinator: Coordinator, job_id: str) -> int:
    from aitbc.storage.sql.tables import job_results, result_files

    def counts(connection: Connection) -> tuple[int, int]:
        files = connection.execute(select(func.count()).where(result_files.c.job_id == job_id)).scalar_one()
        results = connection.execute(select(func.count()).where(job_results.c.job_id == job_id)).scalar_one()
        return files, results

    files, results = await coordinator.database.read(counts, snapshot=True)
    return int(files) + int(results)


@pytest.mark.parametrize("name", MISREAD_NAMES)
async def test_package_paths_with_separators_or_bidi_controls_are_refused(api: Api, name: str) -> None:
    http, coordinator = api
    miner = await started_miner(http, coordinator, "farm", "m1")
    job_id, lease_id = await running_job(http, coordinator, miner)
    assert_refused(await miner.upload(job_id, lease_id, quote(name), b"data"), 422)
    assert await result_file_rows(coordinator, job_id) == 0
    manifest = {"job_id": job_id, "miner_id": miner.miner_id, "files": [{"path": name, "size": 0, "sha256": "0" * 64}]}
    body = {"lease_id": lease_id, "manifest": manifest, "signature": sign(miner.key, manifest)}
    assert_refused(await miner.call("complete", job_id, body), 422)
    assert (await stored_job(coordinator, job_id)).status is JobStatus.RUNNING
    assert await result_file_rows(coordinator, job_id) == 0


@pytest.mark.parametrize(
    "paths",
    [
        pytest.param(("artifacts/dir", "artifacts/dir/sub"), id="file-and-folder"),
        pytest.param(("artifacts/dir/sub", "artifacts/dir"), id="folder-then-file"),
        pytest.param(("artifacts/Report.txt", "artifacts/report.txt"), id="case-only"),
        pytest.param(("artifacts/DIR/x", "artifacts/dir"), id="case-file-and-folder"),
    ],
)
async def test_a_package_that_cannot_unpack_the_same_everywhere_is_refused(api: Api, paths: tuple[str, str]) -> None:
    http, coordinator = api
    miner = await started_miner(http, coordinator, "farm", "m1")
    job_id, lease_id = await running_job(http, coordinator, miner)
    response = await miner.finish(job_id, lease_id, {path: path.encode() for path in paths})
    assert_refused(response, 422)
    job = await stored_job(coordinator, job_id)
    assert job.status is JobStatus.RUNNING and job.results_state == "none"
    fine = await miner.finish(job_id, lease_id, {"artifacts/dir/sub": b"ok", "artifacts/other": b"ok"})
    assert fine.status_code == 200, fine.text


def test_the_miner_packages_only_what_the_coordinator_accepts(tmp_path: Path) -> None:
    layout = PackageLayout(tmp_path / "package")
    layout.create()
    layout.result_file.write_text("done")
    for name in ("ok.txt", "a\u2028b.txt", "\u202egnp.exe", "x\u0085y", "Same.txt", "same.txt"):
        (layout.artifacts_dir / name).write_text(name)
    packaged = [relative for relative, _path in layout.files()]
    assert packaged == [
        "artifacts/Same.txt",
        "artifacts/ok.txt",
        "logs/stderr.log",
        "logs/stdout.log",
        "result.txt",
    ]
    paths = PackagePaths()
    for relative in packaged:
        paths.add(relative)


# -- the CLI prints job text as text ------------------------------------------------------------------------

MARKUP = "[/bold] [red]not red[/] [link=http://x]"


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[httpx.AsyncClient, HttpMiner]]:
    """A real server on a socket with a client key in the environment (as a user runs the CLI) and a miner."""
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False)
    async with coordinator_session(settings) as coordinator:
        client_key = (await coordinator.accounts.create_key("alice", Role.CLIENT)).secret
        miner_key = (await coordinator.accounts.create_key("farm", Role.MINER)).secret
    with served_in_thread(settings) as url:
        monkeypatch.setenv("AITBC_URL", url)
        monkeypatch.setenv("AITBC_API_KEY", client_key)
        monkeypatch.setenv("AITBC_CONFIG", str(tmp_path / "profile.json"))
        monkeypatch.setenv("COLUMNS", "300")
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            miner = HttpMiner(http, miner_key, name="m1")
            await miner.register()
            yield http, miner


async def job_full_of_markup(http: httpx.AsyncClient, miner: HttpMiner) -> tuple[str, str]:
    """A running job whose model, progress message and log lines all look like Rich markup."""
    headers = {"X-Api-Key": os.environ["AITBC_API_KEY"]}
    submitted = await http.post("/v1/jobs", json={"type": "command", "input": "x", "model": MARKUP}, headers=headers)
    assert submitted.status_code == 201, submitted.text
    [claimed] = await miner.claim()
    job_id, lease_id = claimed["job_id"], claimed["lease_id"]
    assert (await miner.call("start", job_id, {"lease_id": lease_id})).status_code == 200
    progress = await miner.call("progress", job_id, {"lease_id": lease_id, "progress": 50, "message": MARKUP})
    assert progress.status_code == 200, progress.text
    logged = await miner.call("logs", job_id, {"lease_id": lease_id, "lines": [{"line": f"log {MARKUP}"}]})
    assert logged.status_code == 200, logged.text
    return job_id, lease_id


async def test_watch_prints_log_lines_as_text(served: tuple[httpx.AsyncClient, HttpMiner]) -> None:
    http, miner = served
    job_id, lease_id = await job_full_of_markup(http, miner)
    aitbc = str(Path(sys.executable).with_name("aitbc"))
    watcher = subprocess.Popen(
        [aitbc, "client", "watch", "--job-id", job_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert watcher.stdout is not None
    seen: list[str] = []
    for line in watcher.stdout:  # the replayed log line is the sign that watch is following the job
        seen.append(line)
        if f"log {MARKUP}" in line:
            break
    assert any(f"log {MARKUP}" in line for line in seen), "".join(seen)
    failed = await miner.call(
        "fail", job_id, {"lease_id": lease_id, "reason": "runtime_error", "message": f"broke {MARKUP}"}
    )
    assert failed.status_code == 200, failed.text
    rest = (await asyncio.to_thread(watcher.communicate))[0]
    assert watcher.returncode == 1, "".join(seen) + rest  # exit 1: the job failed (not a crash)
    assert f"broke {MARKUP}" in rest and "MarkupError" not in rest


async def test_every_command_prints_job_text_as_text(served: tuple[httpx.AsyncClient, HttpMiner]) -> None:
    http, miner = served
    job_id, lease_id = await job_full_of_markup(http, miner)
    failed = await miner.call(
        "fail", job_id, {"lease_id": lease_id, "reason": "runtime_error", "message": f"broke {MARKUP}"}
    )
    assert failed.status_code == 200, failed.text
    runner = CliRunner()
    for command in ("status", "get", "watch", "logs"):
        result = runner.invoke(cli_app, ["client", command, "--job-id", job_id], catch_exceptions=False)
        assert result.exit_code in (0, 1), (command, result.output)
        assert MARKUP in result.output, (command, result.output)
    listed = runner.invoke(cli_app, ["client", "list"], catch_exceptions=False)
    assert listed.exit_code == 0 and MARKUP in listed.output, listed.output
    refused = runner.invoke(cli_app, ["client", "list", "--status", MARKUP], catch_exceptions=False)
    assert refused.exit_code == 1 and "Error:" in refused.output and MARKUP in refused.output, refused.output


@pytest.fixture
def websocket_server(tmp_path: Path, database_url: str) -> Iterator[tuple[str, str]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, run_reaper=False)

    async def make_key() -> str:
        async with coordinator_session(settings) as coordinator:
            return (await coordinator.accounts.create_key("alice", Role.CLIENT)).secret

    key = asyncio.run(make_key())
    with served_in_thread(settings) as url:
        yield url.replace("http://", "ws://") + "/v1/jobs/ws", key


@pytest.mark.parametrize("query", ["job_id=job_%00", "since=99999999999999999999999", "since=%00"])
def test_websocket_query_text_is_checked(websocket_server: tuple[str, str], query: str) -> None:
    url, key = websocket_server
    socket = websocket.create_connection(f"{url}?{query}", header={"X-Api-Key": key}, timeout=30)
    try:
        answer = json.loads(socket.recv())
    finally:
        socket.close()
    assert answer["code"] in (4400, 4422), answer
    assert answer["error"], answer


async def test_nul_in_a_stored_header_is_refused(api: Api) -> None:
    http, coordinator = api
    headers = {**await client_headers(coordinator), "Idempotency-Key": "key\x00"}
    response = await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers=headers)
    assert_refused(response)
    assert await job_count(coordinator) == 0


async def test_the_miner_sends_job_output_with_nul_as_text_the_api_accepts(api: Api) -> None:
    http, coordinator = api
    miner = await started_miner(http, coordinator, "farm", "m1")
    job_id, lease_id = await running_job(http, coordinator, miner)
    raw = "binary \x00 output \ud800 here"
    refused = await http.post(
        f"/v1/miners/{miner.miner_id}/jobs/{job_id}/logs",
        content=json.dumps({"lease_id": lease_id, "lines": [{"line": raw}]}).encode(),  # \u escapes
        headers={**miner.headers, "Content-Type": "application/json"},
    )
    assert_refused(refused)
    line = sendable(raw)
    assert "\x00" not in line and line.startswith("binary \ufffd output ")
    accepted = await miner.call("logs", job_id, {"lease_id": lease_id, "lines": [{"line": line}]})
    assert accepted.status_code == 200, accepted.text
