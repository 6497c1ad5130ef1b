"""Billing on SQLite and PostgreSQL: holds at submit, per-second charges at the end, exactly-once
settlement, 402 and 429 that change nothing, stats and exports that agree with the jobs."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import httpx
import pytest

from aitbc.domain.clock import ManualClock
from aitbc.domain.errors import PaymentRequired, RateLimited
from aitbc.domain.job import JobStatus
from aitbc.domain.plans import Plan, Role
from aitbc.protocol.miners import FailRequest, FinishRequest
from aitbc.services.billing import PLATFORM_ACCOUNT
from aitbc.wiring import Coordinator
from tests.helpers import job_request, principal, register_miner

A100_HIGH_PER_SECOND = Decimal("0.10") * Decimal("1.5") / 3600


def units(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.000000001"))


async def balances(coordinator: Coordinator, *names: str) -> list[Decimal]:
    found = []
    for name in names:
        account = await coordinator.accounts.account_named(name)
        found.append((await coordinator.billing.balance_of(account)).available)
    return found


async def run_for(coordinator: Coordinator, clock: ManualClock, seconds: float, **spec: object) -> tuple[str, str, str]:
    client = await principal(coordinator, "alice", Role.CLIENT)
    owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, owner, gpus=[{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}])
    job = (await coordinator.jobs.submit(client, job_request(**spec))).job
    (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    await coordinator.running.start(owner, miner, job.id, assignment.lease_id)
    clock.advance(seconds)
    return job.id, miner, assignment.lease_id


async def test_submit_quotes_and_holds_the_maximum(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    await coordinator.billing.grant("alice", Decimal(10))
    job = (
        await coordinator.jobs.submit(
            client,
            job_request(requirements={"gpu_type": "a100", "gpu_count": 4}, priority="high", timeout_seconds=4 * 3600),
        )
    ).job
    assert job.max_cost == Decimal("2.4")  # the seed's example: 0.10 × 4 GPUs × 4 h × 1.5
    assert job.estimated_cost == job.max_cost and job.estimated_time_seconds == 4 * 3600
    balance = await coordinator.billing.balance(client)
    assert balance.held == Decimal("2.4")
    assert balance.available == Decimal(11) - Decimal("2.4")  # 1 welcome credit + 10 granted


async def test_a_completed_job_is_charged_per_started_second(coordinator: Coordinator, clock: ManualClock) -> None:
    job_id, miner, lease = await run_for(
        coordinator, clock, 2.3, requirements={"gpu_type": "a100"}, priority="high", timeout_seconds=600
    )
    owner = await principal(coordinator, "farm", Role.MINER)
    before_client, before_miner = await balances(coordinator, "alice", "farm")
    await coordinator.finishing.complete(owner, miner, job_id, FinishRequest(lease_id=lease))
    client = await principal(coordinator, "alice", Role.CLIENT)
    job = await coordinator.jobs.get(client, job_id)
    charge = units(3 * A100_HIGH_PER_SECOND)
    assert (job.billed_seconds, job.cost) == (3, charge)
    after_client, after_miner = await balances(coordinator, "alice", "farm")
    assert after_client - before_client == job.max_cost - charge  # the unused hold comes back
    fee = units(charge * Decimal("0.10"))
    assert after_miner - before_miner == charge - fee
    (platform,) = await balances(coordinator, PLATFORM_ACCOUNT)
    assert platform == fee
    # A retried completion changes nothing more.
    await coordinator.finishing.complete(owner, miner, job_id, FinishRequest(lease_id=lease))
    assert await balances(coordinator, "alice", "farm") == [after_client, after_miner]


async def test_cancel_pays_until_the_stop_and_miner_faults_pay_nothing(
    coordinator: Coordinator, clock: ManualClock
) -> None:
    owner = await principal(coordinator, "farm", Role.MINER)
    client = await principal(coordinator, "alice", Role.CLIENT)
    job_id, miner, lease = await run_for(coordinator, clock, 1.0, requirements={"gpu_type": "a100"}, priority="high")
    await coordinator.jobs.cancel(client, job_id)
    clock.advance(0.4)
    await coordinator.finishing.fail(owner, miner, job_id, FailRequest(lease_id=lease, message="stopped"))
    canceled = await coordinator.jobs.get(client, job_id)
    assert canceled.status is JobStatus.CANCELED
    assert (canceled.billed_seconds, canceled.cost) == (2, units(2 * A100_HIGH_PER_SECOND))

    lost = (await coordinator.jobs.submit(client, job_request(requirements={"gpu_type": "a100"}))).job
    for _ in range(lost.max_attempts):
        (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
        await coordinator.running.start(owner, miner, lost.id, assignment.lease_id)
        clock.advance(coordinator.settings.lease_seconds + 1)
        await coordinator.reaper.run_once()
    lost = await coordinator.jobs.get(client, lost.id)
    assert lost.status is JobStatus.FAILED and lost.failure_reason.value == "miner_lost"  # type: ignore[union-attr]
    assert (lost.cost, lost.billed_seconds) == (Decimal(0), 0)

    crashed = (await coordinator.jobs.submit(client, job_request(requirements={"gpu_type": "a100"}))).job
    (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
    await coordinator.running.start(owner, miner, crashed.id, assignment.lease_id)
    clock.advance(5)
    await coordinator.finishing.fail(
        owner, miner, crashed.id, FailRequest(lease_id=assignment.lease_id, reason="runtime_error")
    )
    crashed = await coordinator.jobs.get(client, crashed.id)
    assert crashed.cost == units(5 * Decimal("0.10") / 3600)

    canceled_pending = (await coordinator.jobs.submit(client, job_request())).job
    await coordinator.jobs.cancel(client, canceled_pending.id)
    assert (await coordinator.jobs.get(client, canceled_pending.id)).cost == Decimal(0)
    balance = await coordinator.billing.balance(client)
    assert balance.held == Decimal(0)


async def test_402_when_the_balance_cannot_cover_the_hold_changes_nothing(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    before = await coordinator.billing.balance(client)
    expensive = job_request(requirements={"gpu_type": "a100", "gpu_count": 8}, priority="urgent", timeout_seconds=86400)
    with pytest.raises(PaymentRequired, match="aitbc admin credits grant"):
        await coordinator.jobs.submit(client, expensive)
    assert await coordinator.billing.balance(client) == before
    page = await coordinator.jobs.list(client, [], None, None, 10, None)
    assert page.total == 0


async def test_concurrent_job_cap_of_the_plan(coordinator: Coordinator) -> None:
    client = await principal(coordinator, "alice", Role.CLIENT)
    object.__setattr__(
        coordinator.settings,
        "plan_limits",
        {
            **coordinator.settings.plan_limits,
            Plan.FREE: coordinator.settings.plan_limits[Plan.FREE].__class__(7, 60, 1000, 3),
        },
    )
    jobs = [(await coordinator.jobs.submit(client, job_request())).job for _ in range(3)]
    with pytest.raises(RateLimited, match="3 unfinished jobs") as refused:
        await coordinator.jobs.submit(client, job_request())
    assert refused.value.retry_after > 0
    await coordinator.jobs.cancel(client, jobs[0].id)
    assert (await coordinator.jobs.submit(client, job_request())).created


async def test_rate_limit_over_http_is_429_with_retry_after_and_changes_nothing(
    api: tuple[httpx.AsyncClient, Coordinator], clock: ManualClock
) -> None:
    http, coordinator = api
    key = (await coordinator.accounts.create_key("alice", Role.CLIENT)).secret
    limit = coordinator.settings.plan_limits[Plan.FREE].requests_per_minute
    for _ in range(limit - 1):
        assert (await http.get("/v1/jobs", headers={"X-Api-Key": key})).status_code == 200
    assert (
        await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers={"X-Api-Key": key})
    ).status_code == 201
    refused = await http.post("/v1/jobs", json={"type": "command", "input": "y"}, headers={"X-Api-Key": key})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "60 requests per minute" in refused.json()["message"]
    clock.advance(61)
    listed = (await http.get("/v1/jobs", headers={"X-Api-Key": key})).json()
    assert listed["total"] == 1
    pro = (await coordinator.accounts.create_key("bigco", Role.CLIENT, Plan.PRO)).secret
    for _ in range(limit + 5):
        assert (await http.get("/v1/jobs", headers={"X-Api-Key": pro})).status_code == 200


async def test_stats_export_retry_and_timeline_over_http(
    api: tuple[httpx.AsyncClient, Coordinator], clock: ManualClock
) -> None:
    http, coordinator = api
    key = (await coordinator.accounts.create_key("alice", Role.CLIENT, Plan.PRO)).secret
    miner_owner = await principal(coordinator, "farm", Role.MINER)
    miner = await register_miner(coordinator, miner_owner)
    headers = {"X-Api-Key": key}
    created = [
        (await http.post("/v1/jobs", json={"type": "command", "input": f"echo {i}"}, headers=headers)).json()
        for i in range(6)
    ]
    for seconds, outcome in ((2, "complete"), (4, "complete"), (1, "fail"), (3, "cancel")):
        (assignment,) = await coordinator.claiming.claim(miner_owner, miner, 1, 0)
        await coordinator.running.start(miner_owner, miner, assignment.job_id, assignment.lease_id)
        clock.advance(seconds)
        if outcome == "complete":
            await coordinator.finishing.complete(
                miner_owner, miner, assignment.job_id, FinishRequest(lease_id=assignment.lease_id)
            )
        elif outcome == "fail":
            await coordinator.finishing.fail(
                miner_owner, miner, assignment.job_id, FailRequest(lease_id=assignment.lease_id, reason="runtime_error")
            )
        else:
            await http.post(f"/v1/jobs/{assignment.job_id}/cancel", headers=headers)
            await coordinator.finishing.fail(
                miner_owner, miner, assignment.job_id, FailRequest(lease_id=assignment.lease_id)
            )
    stats = (await http.get("/v1/stats", headers=headers)).json()
    exported = json.loads((await http.get("/v1/jobs/export", params={"format": "json"}, headers=headers)).content)
    assert len(exported) == stats["total_jobs"] == 6
    finished = [j for j in exported if j["status"] in ("completed", "failed", "canceled")]
    completed = [j for j in exported if j["status"] == "completed"]
    assert stats["finished"] == len(finished) == 4
    assert stats["success_rate"] == len(completed) / len(finished) == 0.5
    assert stats["average_completion_seconds"] == 3.0
    assert Decimal(stats["total_spent"]) == sum(Decimal(j["cost"]) for j in exported if j["cost"] is not None)
    assert Decimal(stats["total_spent"]) > 0
    table = list(
        csv.DictReader(io.StringIO((await http.get("/v1/jobs/export", params={"format": "csv"}, headers=headers)).text))
    )
    assert [row["job_id"] for row in table] == [j["job_id"] for j in exported]
    assert {row["status"] for row in table} == {j["status"] for j in exported}
    only_pending = json.loads(
        (await http.get("/v1/jobs/export", params={"status": "pending"}, headers=headers)).content
    )
    assert len(only_pending) == 2

    failed = next(j for j in exported if j["status"] == "failed")
    retried = await http.post(f"/v1/jobs/{failed['job_id']}/retry", headers=headers)
    assert retried.status_code == 201 and retried.json()["retry_of"] == failed["job_id"]
    assert retried.json()["status"] == "pending"
    pending = next(j for j in created if j["job_id"] in {p["job_id"] for p in only_pending})
    refused = await http.post(f"/v1/jobs/{pending['job_id']}/retry", headers=headers)
    assert refused.status_code == 422
    timeline = (await http.get(f"/v1/jobs/{failed['job_id']}/timeline", headers=headers)).json()
    assert [e["status"] for e in timeline] == ["pending", "assigned", "running", "failed"]
    ledger = (await http.get("/v1/billing/ledger", headers=headers)).json()["entries"]
    assert {e["kind"] for e in ledger} == {"grant", "hold", "release"}
    assert sum(Decimal(e["amount"]) for e in ledger) == Decimal(
        (await http.get("/v1/billing/balance", headers=headers)).json()["available"]
    )
