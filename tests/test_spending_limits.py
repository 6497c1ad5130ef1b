"""Spending limits through the real app on SQLite and PostgreSQL: `GET/PUT/DELETE /v1/billing/limit` and
`/v1/billing/alert`, the cap enforced at submit (single, batch and racing submits; 402 naming the cap, nothing
stored), a new UTC month that resets the charges, a settled job's charge counting and its released hold not,
and the alert firing once a month when a miner's completions take the charges past it, across a restart too."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Plan, Role
from aitbc.domain.spending import ALERT_EVENT
from aitbc.protocol.miners import FinishRequest
from aitbc.settings import Settings
from aitbc.wiring import Coordinator, open_coordinator
from tests.helpers import job_request, principal, register_miner
from tests.support.protocol_miner import HttpMiner

Api = tuple[httpx.AsyncClient, Coordinator]
HOUR_ON_A100 = {"type": "command", "requirements": {"gpu_type": "a100"}, "timeout_seconds": 3600}  # holds 0.1
HALF_HOUR_ON_A100 = {**HOUR_ON_A100, "timeout_seconds": 1800}  # holds 0.05
A100 = [{"model": "NVIDIA A100-SXM4-80GB", "vram_gb": 80}]


async def keys(coordinator: Coordinator) -> dict[str, dict[str, str]]:
    made = {}
    for name, role in (("alice", Role.CLIENT), ("bob", Role.CLIENT), ("farm", Role.MINER), ("root", Role.ADMIN)):
        made[name] = {"X-Api-Key": (await coordinator.accounts.create_key(name, role, Plan.PRO)).secret}
    await coordinator.billing.grant("alice", Decimal(100))
    return made


async def ok(response: Any, status: int = 200) -> dict[str, Any]:
    answer = await response
    assert answer.status_code == status, answer.text
    found: dict[str, Any] = answer.json()
    return found


def money(view: dict[str, Any], *fields: str) -> tuple[Decimal | None, ...]:
    """Amounts of a view (decimal strings, 9 places) as decimals, None where null."""
    return tuple(Decimal(view[field]) if view[field] is not None else None for field in fields)


async def job_ids(http: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    page = await ok(http.get("/v1/jobs", params={"limit": 1000}, headers=headers))
    return [job["job_id"] for job in page["jobs"]]


async def run_jobs(miner: HttpMiner, clock: ManualClock, count: int, seconds: float) -> list[str]:
    """A real protocol miner claims `count` jobs, starts them, works `seconds` and completes them in turn."""
    claimed = await miner.claim(count)
    assert len(claimed) == count, claimed
    for job in claimed:
        assert (await miner.call("start", job["job_id"], {"lease_id": job["lease_id"]})).status_code == 200
    clock.advance(seconds)
    for job in claimed:
        finished = await miner.call("complete", job["job_id"], {"lease_id": job["lease_id"]})
        assert finished.status_code == 200, finished.text
    return [job["job_id"] for job in claimed]


async def alert_events(coordinator: Coordinator, account: str) -> list[Any]:
    account_id = (await coordinator.accounts.account_named(account)).id
    events = await coordinator.job_store.events_since(account_id, 0, None, 10_000)
    return [event for event in events if event.kind == ALERT_EVENT]


async def test_the_cap_refuses_exactly_the_submit_that_would_pass_it(api: Api, clock: ManualClock) -> None:
    http, coordinator = api
    made = await keys(coordinator)
    alice = made["alice"]
    limited = await ok(http.put("/v1/billing/limit", json={"monthly": "0.35"}, headers=alice))
    assert money(limited, "monthly_limit", "remaining") == (Decimal("0.35"), Decimal("0.35"))
    assert limited["month"] == "2026-01"
    assert limited["resets_at"] == "2026-02-01T00:00:00.000Z"
    for _ in range(3):
        await ok(http.post("/v1/jobs", json=HOUR_ON_A100, headers=alice), 201)
    before = await ok(http.get("/v1/billing/balance", headers=alice))
    refused = await http.post("/v1/jobs", json=HOUR_ON_A100, headers=alice)
    assert refused.status_code == 402, refused.text
    body = refused.json()
    assert body["error"] == "spending_limit"
    assert "monthly spending limit of 0.35 AITBC" in body["message"]
    assert "0 AITBC charged this month and 0.3 AITBC held" in body["message"]
    assert "aitbc billing limit set --monthly" in body["message"]
    assert len(await job_ids(http, alice)) == 3
    assert await ok(http.get("/v1/billing/balance", headers=alice)) == before
    clock.advance(1)  # the queue's order: the hour-long jobs first
    await ok(http.post("/v1/jobs", json=HALF_HOUR_ON_A100, headers=alice), 201)  # exactly up to the cap
    full = await ok(http.get("/v1/billing/limit", headers=alice))
    assert money(full, "held", "committed", "remaining") == (Decimal("0.35"), Decimal("0.35"), 0)

    # A miner runs one job for 10 minutes: its charge counts, the rest of its hold no longer does.
    miner = HttpMiner(http, made["farm"]["X-Api-Key"], gpus=A100)
    await miner.register()
    await run_jobs(miner, clock, 1, 600)
    after = await ok(http.get("/v1/billing/limit", headers=alice))
    assert money(after, "charged_this_month", "held") == (Decimal("0.016666667"), Decimal("0.25"))
    assert money(after, "committed", "remaining") == (Decimal("0.266666667"), Decimal("0.083333333"))
    assert (await http.post("/v1/jobs", json=HOUR_ON_A100, headers=alice)).status_code == 402
    await ok(http.post("/v1/jobs", json=HALF_HOUR_ON_A100, headers=alice), 201)

    # A new UTC month: last month's charges stop counting; what unfinished jobs hold still counts.
    clock.advance((datetime(2026, 2, 1, tzinfo=UTC) - clock.now()).total_seconds())
    february = await ok(http.get("/v1/billing/limit", headers=alice))
    assert february["month"] == "2026-02"
    assert money(february, "charged_this_month", "held") == (0, Decimal("0.3"))
    await ok(http.post("/v1/jobs", json=HALF_HOUR_ON_A100, headers=alice), 201)
    assert (await http.post("/v1/jobs", json=HALF_HOUR_ON_A100, headers=alice)).status_code == 402

    cleared = await ok(http.delete("/v1/billing/limit", headers=alice))
    assert (cleared["monthly_limit"], cleared["remaining"]) == (None, None)
    await ok(http.post("/v1/jobs", json=HOUR_ON_A100, headers=alice), 201)


async def test_racing_submits_cannot_both_pass_the_cap(api: Api) -> None:
    http, coordinator = api
    alice = (await keys(coordinator))["alice"]
    await ok(http.put("/v1/billing/limit", json={"monthly": "1"}, headers=alice))  # room for 10 holds of 0.1
    answers = await asyncio.gather(*(http.post("/v1/jobs", json=HOUR_ON_A100, headers=alice) for _ in range(20)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 10 + [402] * 10, [answer.text for answer in answers if answer.status_code != 201]
    assert len(await job_ids(http, alice)) == 10
    standing = await ok(http.get("/v1/billing/limit", headers=alice))
    assert money(standing, "held", "remaining") == (1, 0)


async def test_a_batch_over_the_cap_names_the_item_and_stores_nothing(api: Api) -> None:
    http, coordinator = api
    alice = (await keys(coordinator))["alice"]
    await ok(http.put("/v1/billing/limit", json={"monthly": "0.25"}, headers=alice))
    before = await ok(http.get("/v1/billing/balance", headers=alice))
    refused = await http.post("/v1/jobs/batch", json={"jobs": [HOUR_ON_A100] * 4}, headers=alice)
    assert refused.status_code == 402, refused.text
    body = refused.json()
    assert (body["error"], body["item"]) == ("spending_limit", 2)
    assert body["message"].startswith("item 2: ") and "0.2 AITBC with the batch's jobs before it" in body["message"]
    assert await job_ids(http, alice) == []
    assert await ok(http.get("/v1/billing/balance", headers=alice)) == before
    made = await ok(http.post("/v1/jobs/batch", json={"jobs": [HOUR_ON_A100] * 2}, headers=alice), 201)
    assert made["created"] == 2


async def test_the_alert_fires_once_a_month_when_a_miners_charges_cross_it(api: Api, clock: ManualClock) -> None:
    http, coordinator = api
    made = await keys(coordinator)
    alice = made["alice"]
    setting = await ok(http.put("/v1/billing/alert", json={"at": "0.15"}, headers=alice))
    assert money(setting["alert"], "at") == (Decimal("0.15"),) and setting["alert"]["last_fired_at"] is None
    miner = HttpMiner(http, made["farm"]["X-Api-Key"], gpus=A100)
    await miner.register()
    for _ in range(3):
        await ok(http.post("/v1/jobs", json=HOUR_ON_A100, headers=alice), 201)
    (first,) = await run_jobs(miner, clock, 1, 3600)  # 0.1 charged
    assert await alert_events(coordinator, "alice") == []
    (second,) = await run_jobs(miner, clock, 1, 3600)  # 0.2: past 0.15
    (event,) = await alert_events(coordinator, "alice")
    assert (event.job_id, event.status) == (second, "completed")
    assert (event.data["threshold"], event.data["charged"], event.data["month"]) == ("0.15", "0.2", "2026-01")
    shown = await ok(http.get("/v1/billing/alert", headers=alice))
    assert shown["alert"]["fired_this_month"] is True
    assert shown["alert"]["last_fired_job_id"] == second
    assert money(shown["alert"], "last_fired_charged", "last_fired_threshold") == (Decimal("0.2"), Decimal("0.15"))
    assert shown["alert"]["last_fired_at"] == event.data["fired_at"]
    await run_jobs(miner, clock, 1, 3600)  # 0.3: the month's alert has fired
    assert len(await alert_events(coordinator, "alice")) == 1
    assert first != second

    # Next month it fires again, once the new month's charges reach it; bob's account never hears of it.
    clock.advance((datetime(2026, 2, 1, tzinfo=UTC) - clock.now()).total_seconds())
    for _ in range(3):
        await ok(http.post("/v1/jobs", json=HOUR_ON_A100, headers=alice), 201)
    await run_jobs(miner, clock, 1, 3600)
    assert len(await alert_events(coordinator, "alice")) == 1
    await run_jobs(miner, clock, 2, 3600)
    events = await alert_events(coordinator, "alice")
    assert [e.data["month"] for e in events] == ["2026-01", "2026-02"]
    assert await alert_events(coordinator, "bob") == []
    cleared = await ok(http.delete("/v1/billing/alert", headers=alice))
    assert cleared["alert"]["at"] is None and cleared["alert"]["last_fired_month"] == "2026-02"


async def test_a_fired_alert_survives_a_restart(tmp_path: Path, database_url: str, clock: ManualClock) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, run_reaper=False)

    async def complete_one(coordinator: Coordinator) -> None:
        client = await principal(coordinator, "alice", Role.CLIENT)
        owner = await principal(coordinator, "farm", Role.MINER)
        miner = await register_miner(coordinator, owner, gpus=A100)
        job = (await coordinator.jobs.submit(client, job_request(**HOUR_ON_A100))).job
        (assignment,) = await coordinator.claiming.claim(owner, miner, 1, 0)
        await coordinator.running.start(owner, miner, job.id, assignment.lease_id)
        clock.advance(3600)
        await coordinator.finishing.complete(owner, miner, job.id, FinishRequest(lease_id=assignment.lease_id))

    coordinator = await open_coordinator(settings, clock)
    try:
        client = await principal(coordinator, "alice", Role.CLIENT)
        await coordinator.spending.set_alert(client.account, "0.05")
        await complete_one(coordinator)
        assert len(await alert_events(coordinator, "alice")) == 1
    finally:
        await coordinator.close()
    coordinator = await open_coordinator(settings, clock)
    try:
        await complete_one(coordinator)
        assert len(await alert_events(coordinator, "alice")) == 1
        shown = await coordinator.spending.show(await coordinator.accounts.account_named("alice"))
        assert shown.alert.fired_this_month and shown.charged_this_month == Decimal("0.2")
    finally:
        await coordinator.close()


async def test_hostile_settings_are_refused_and_change_nothing(api: Api) -> None:
    http, coordinator = api
    made = await keys(coordinator)
    alice, bob = made["alice"], made["bob"]
    await ok(http.put("/v1/billing/limit", json={"monthly": "5"}, headers=alice))
    await ok(http.put("/v1/billing/alert", json={"at": "4"}, headers=alice))
    before = await ok(http.get("/v1/billing/limit", headers=alice))
    for body in (
        {"monthly": "-5"},
        {"monthly": "0"},
        {"monthly": "0.000000000"},
        {"monthly": "1000000000"},
        {"monthly": "0.0000000001"},
        {"monthly": "1e3"},
        {"monthly": "NaN"},
        {"monthly": 5},
        {"monthly": ""},
        {"monthly": "5", "account": "bob"},
        {},
    ):
        answer = await http.put("/v1/billing/limit", json=body, headers=alice)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["message"]
    for body in ({"at": "-1"}, {"at": "0"}, {"at": "abc"}, {"at": "4", "extra": 1}):
        assert (await http.put("/v1/billing/alert", json=body, headers=alice)).status_code == 422, body
    refused = await http.put("/v1/billing/limit", json={"monthly": "0"}, headers=alice)
    assert "positive" in refused.json()["message"]
    assert await ok(http.get("/v1/billing/limit", headers=alice)) == before

    # Roles: a miner has no spending to limit, nobody without a key, and only admins set another's.
    assert (await http.put("/v1/billing/limit", json={"monthly": "1"}, headers=made["farm"])).status_code == 403
    assert (await http.get("/v1/billing/limit")).status_code == 401
    assert (await http.put("/v1/admin/accounts/alice/limit", json={"monthly": "1"}, headers=bob)).status_code == 403
    assert (await http.delete("/v1/admin/accounts/alice/limit", headers=bob)).status_code == 403
    assert await ok(http.get("/v1/billing/limit", headers=alice)) == before
    # Bob's own settings are his: alice's stay as they were.
    await ok(http.put("/v1/billing/limit", json={"monthly": "0.5"}, headers=bob))
    await ok(http.delete("/v1/billing/alert", headers=bob))
    assert await ok(http.get("/v1/billing/limit", headers=alice)) == before

    # An admin sets and clears another account's cap; an unknown account is a 404.
    admin = made["root"]
    set_by_admin = await ok(http.put("/v1/admin/accounts/bob/limit", json={"monthly": "2"}, headers=admin))
    assert set_by_admin["account"] == "bob" and money(set_by_admin, "monthly_limit") == (2,)
    assert money(await ok(http.get("/v1/billing/limit", headers=bob)), "monthly_limit") == (2,)
    assert (await http.put("/v1/admin/accounts/nobody/limit", json={"monthly": "2"}, headers=admin)).status_code == 404
    assert (await http.put("/v1/admin/accounts/bob/limit", json={"monthly": "-2"}, headers=admin)).status_code == 422
    cleared = await ok(http.delete("/v1/admin/accounts/bob/limit", headers=admin))
    assert cleared["monthly_limit"] is None
    assert await ok(http.get("/v1/billing/limit", headers=alice)) == before
