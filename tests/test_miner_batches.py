"""A miner's batches, on SQLite and PostgreSQL: a claim that starts its jobs in the same transaction (and bills
them exactly as a claim then a start would), and a complete of several jobs in one call and one transaction,
where one refused item fails alone and no job is ever completed twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx

from aitbc.domain.clock import ManualClock
from aitbc.domain.job import JobStatus
from aitbc.domain.plans import Role
from aitbc.protocol.miners import BatchCompleteItem
from aitbc.storage.interfaces import JobFilter
from aitbc.wiring import Coordinator
from tests.helpers import job_request, principal, register_miner
from tests.support.protocol_miner import HttpMiner


@contextmanager
def transactions(coordinator: Coordinator) -> Iterator[list[str]]:
    """The statements and commits the coordinator runs meanwhile (`Database.observed`: on the real engines and
    connections)."""
    with coordinator.database.observed() as seen:
        yield seen


def job_updates(seen: list[str]) -> int:
    return sum(1 for text in seen if text.lstrip().upper().startswith("UPDATE JOBS"))


async def test_a_claim_that_starts_eight_jobs_is_one_transaction(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner)
    for _ in range(8):
        await coordinator.jobs.submit(client, job_request())
    with transactions(coordinator) as seen:
        claimed = await coordinator.claiming.claim(owner, miner, 8, 0, start=True)
    assert len(claimed) == 8 and {a.status for a in claimed} == {JobStatus.RUNNING}
    # The miner's touch, then one transaction for every claim and start (16 guarded updates, their events).
    assert seen.count("COMMIT") == 2
    assert job_updates(seen) == 16
    for assignment in claimed:
        job = await coordinator.job_store.get_job(assignment.job_id)
        assert job is not None and job.status is JobStatus.RUNNING and job.started_at == job.assigned_at
        assert job.lease_id == assignment.lease_id and job.attempt == assignment.attempt == 1
        moves = [e.data.get("move") for e in await coordinator.job_store.job_events(job.id, ["status"])]
        assert moves[-2:] == ["claim", "start"]  # the same history a claim then a start leaves


async def test_claim_and_start_bills_exactly_like_claim_then_start(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    await coordinator.billing.grant("alice", Decimal(10))
    owner = await principal(coordinator, "farm", Role.MINER)
    gpus = [{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}]
    together = await register_miner(coordinator, owner, "together", gpus=gpus)
    apart = await register_miner(coordinator, owner, "apart", gpus=gpus)
    for _ in range(4):
        await coordinator.jobs.submit(client, job_request(requirements={"gpu_type": "a100"}, priority="high"))
    leases: dict[str, tuple[str, str]] = {}
    for assignment in await coordinator.claiming.claim(owner, together, 2, 0, start=True):
        leases[assignment.job_id] = (together, assignment.lease_id)
    for assignment in await coordinator.claiming.claim(owner, apart, 2, 0):
        await coordinator.running.start(owner, apart, assignment.job_id, assignment.lease_id)
        leases[assignment.job_id] = (apart, assignment.lease_id)
    clock.advance(2.3)
    for miner in (together, apart):
        items = [BatchCompleteItem(job_id=j, lease_id=lease) for j, (m, lease) in leases.items() if m == miner]
        results = await coordinator.finishing.complete_many(owner, miner, items)
        assert [r.directive.status for r in results if r.directive] == [JobStatus.COMPLETED] * 2
    jobs = [await coordinator.job_store.get_job(job_id) for job_id in leases]
    assert {(j.billed_seconds, j.cost) for j in jobs if j} == {(3, jobs[0].cost if jobs[0] else None)}
    entries = await coordinator.ledger.entries(None, None, None, 1000, 0)
    for kind in ("hold", "release", "payout", "fee"):
        amounts = {e.amount_units for e in entries if e.kind == kind and e.job_id in leases}
        assert len(amounts) == 1, (kind, amounts)  # the same hold, charge, payout and fee for all four
    totals = await coordinator.ledger.totals_by_kind()
    assert -totals["hold"] == totals["release"] + totals["payout"] + totals["fee"]


async def _claimed(http: httpx.AsyncClient, coordinator: Coordinator, count: int) -> tuple[HttpMiner, list[Any]]:
    client = await coordinator.accounts.create_key("alice", Role.CLIENT)
    for _ in range(count):
        answer = await http.post(
            "/v1/jobs", json={"type": "command", "input": "echo"}, headers={"X-Api-Key": client.secret}
        )
        assert answer.status_code == 201, answer.text
    miner = HttpMiner(http, (await coordinator.accounts.create_key("farm", Role.MINER)).secret)
    await miner.register()
    answer = await http.post(
        f"/v1/miners/{miner.miner_id}/claim",
        json={"max_jobs": count, "wait_seconds": 0, "start": True},
        headers=miner.headers,
    )
    assert answer.status_code == 200, answer.text
    jobs = answer.json()["jobs"]
    assert len(jobs) == count and {job["status"] for job in jobs} == {"running"}
    return miner, jobs


def _item(miner: HttpMiner, job: dict[str, Any], files: dict[str, bytes] | None = None, **extra: Any) -> dict[str, Any]:
    manifest, signature = miner.manifest(job["job_id"], files or {})
    return {"job_id": job["job_id"], "lease_id": job["lease_id"], "manifest": manifest, "signature": signature, **extra}


async def test_a_batch_complete_with_a_stale_lease_fails_that_item_alone(
    api: tuple[httpx.AsyncClient, Coordinator],
) -> None:
    http, coordinator = api
    miner, jobs = await _claimed(http, coordinator, 3)
    upload = await miner.upload(jobs[0]["job_id"], jobs[0]["lease_id"], "result.txt", b"hi\n")
    assert upload.status_code == 200, upload.text
    items = [
        _item(miner, jobs[0], {"result.txt": b"hi\n"}, exit_code=0, usage={"tokens": 3}),
        {**_item(miner, jobs[1]), "lease_id": "lease_stale"},
        _item(miner, jobs[2]),
        {"job_id": "job_nobody", "lease_id": "lease_x"},
    ]
    path = f"/v1/miners/{miner.miner_id}/jobs/complete"
    answer = await http.post(path, json={"jobs": items}, headers=miner.headers)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["job_id"] for r in results] == [item["job_id"] for item in items]
    assert results[0]["directive"]["status"] == results[2]["directive"]["status"] == "completed"
    assert results[1]["directive"] is None and results[1]["error"]["status"] == 409
    assert "no longer current" in results[1]["error"]["message"]
    assert results[3]["error"]["status"] == 404
    status = {job["job_id"]: (await coordinator.job_store.get_job(job["job_id"])) for job in jobs}
    assert [status[job["job_id"]].status for job in jobs] == [  # type: ignore[union-attr]
        JobStatus.COMPLETED,
        JobStatus.RUNNING,
        JobStatus.COMPLETED,
    ]
    result = await coordinator.job_store.get_result(jobs[0]["job_id"])
    assert result is not None and result.usage == {"tokens": 3} and len(result.manifest["files"]) == 1
    # The whole call sent again answers the same: the completed ones as they were, the stale one refused.
    again = (await http.post(path, json={"jobs": items}, headers=miner.headers)).json()["results"]
    assert [r["directive"] and r["directive"]["status"] for r in again] == ["completed", None, "completed", None]
    # Invalid bodies are a 422 for the whole call.
    for body in ({"jobs": []}, {"jobs": [items[0], items[0]]}, {"jobs": [{"job_id": "j"}]}):
        assert (await http.post(path, json=body, headers=miner.headers)).status_code == 422


async def test_racing_batch_completes_complete_each_job_once(api: tuple[httpx.AsyncClient, Coordinator]) -> None:
    http, coordinator = api
    miner, jobs = await _claimed(http, coordinator, 6)
    items = [_item(miner, job) for job in jobs]
    path = f"/v1/miners/{miner.miner_id}/jobs/complete"
    answers = await asyncio.gather(
        http.post(path, json={"jobs": items}, headers=miner.headers),
        http.post(path, json={"jobs": list(reversed(items))}, headers=miner.headers),
        http.post(path, json={"jobs": items[2:]}, headers=miner.headers),
        *(miner.call("complete", item["job_id"], {"lease_id": item["lease_id"]}) for item in items[:2]),
    )
    for answer in answers[:3]:
        assert answer.status_code == 200, answer.text
        assert {r["directive"]["status"] for r in answer.json()["results"]} == {"completed"}
    for answer in answers[3:]:
        assert answer.status_code == 200 and answer.json()["status"] == "completed"
    for job in jobs:
        moves = [e.data.get("move") for e in await coordinator.job_store.job_events(job["job_id"], ["status"])]
        assert moves.count("complete") == 1
    entries = await coordinator.ledger.entries(None, None, None, 1000, 0)
    releases = [e.job_id for e in entries if e.kind == "release"]
    assert sorted(releases) == sorted(job["job_id"] for job in jobs)  # settled exactly once each
    totals = await coordinator.ledger.totals_by_kind()
    assert -totals["hold"] == totals["release"] + totals.get("payout", 0) + totals.get("fee", 0)
    page = await coordinator.job_store.list_jobs(JobFilter(), 100, None)
    assert {job.status for job in page.jobs} == {JobStatus.COMPLETED}
