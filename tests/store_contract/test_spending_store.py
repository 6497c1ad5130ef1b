"""`SpendingStore` and the spending checks of `JobLifecycleStore`: a monthly cap enforced in the insert's
transaction (racing submits cannot both pass it), totals kept with the balance (what unfinished jobs hold, what
the UTC month was charged), and an alert recorded once per month and threshold by the settling transaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from aitbc.domain.accounts import Account
from aitbc.domain.errors import SpendingLimitReached
from aitbc.domain.job import Job
from aitbc.domain.money import to_units
from aitbc.domain.moves import CancelPending
from aitbc.domain.spending import ALERT_EVENT
from aitbc.storage.interfaces import Changed, JobFilter, LedgerEntry
from tests.store_contract.conftest import T0, Stores, at, job_row

JANUARY, FEBRUARY = 202601, 202602
IN_FEBRUARY = datetime(2026, 2, 1, tzinfo=UTC)


async def settle(stores: Stores, job: Job, charge: int, when: datetime | None = None) -> Changed:
    """End `job` (pending: canceled) with a charge of `charge` units out of its hold, as billing settles it."""
    moment = when or at(10)
    hold = to_units(job.max_cost)
    release = LedgerEntry(job.account_id, "release", hold - charge, job.id, charged_units=charge)
    changed = await stores.jobs.transition(job.id, CancelPending(moment), moment, ledger=[release])
    assert changed is not None
    return changed


async def submit(stores: Stores, account: Account, hold: int, when: datetime = T0) -> Job:
    job, _ = await stores.jobs.insert_job(job_row(account, hold_units=hold, max_cost_units=hold, created_at=when), when)
    return job


async def totals(stores: Stores, account: Account, month: int = JANUARY) -> tuple[int, int]:
    spending = await stores.spending.spending(account.id, month)
    assert spending is not None
    assert spending.held_units == await stores.ledger.held_units(account.id)  # kept equal to the ledger's holds
    return spending.charged_units, spending.held_units


async def test_the_cap_refuses_exactly_the_submit_that_would_pass_it_and_stores_nothing(
    stores: Stores, alice: Account
) -> None:
    await stores.ledger.append([LedgerEntry(alice.id, "grant", 10_000)], T0)
    limited = await stores.spending.set_monthly_limit(alice.id, 1000, JANUARY)
    assert limited is not None and limited.monthly_limit_units == 1000
    first = await submit(stores, alice, 400)
    await submit(stores, alice, 400)
    with pytest.raises(SpendingLimitReached) as refused:
        await submit(stores, alice, 201)
    message = refused.value.message
    assert "monthly spending limit of 0.000001 AITBC" in message and "0.0000008 AITBC held" in message
    assert "aitbc billing limit set --monthly" in message and refused.value.status_code == 402
    assert (await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 10, None)).total == 2
    assert await stores.ledger.balance_units(alice.id) == 10_000 - 800
    await submit(stores, alice, 200)  # exactly up to the cap
    assert await totals(stores, alice) == (0, 1000)

    # A settled job's charge counts; the rest of its hold stops counting.
    await settle(stores, first, 150)
    assert await totals(stores, alice) == (150, 600)
    await submit(stores, alice, 250)
    with pytest.raises(SpendingLimitReached):
        await submit(stores, alice, 1)
    assert await totals(stores, alice) == (150, 850)

    # A new month: the charges of the last one stop counting; what unfinished jobs hold still does.
    assert await totals(stores, alice, FEBRUARY) == (0, 850)
    await submit(stores, alice, 150, IN_FEBRUARY)
    with pytest.raises(SpendingLimitReached):
        await submit(stores, alice, 1, IN_FEBRUARY)
    # Without a cap, only the balance bounds a submit.
    assert await stores.spending.set_monthly_limit(alice.id, None, FEBRUARY) is not None
    await submit(stores, alice, 5000, IN_FEBRUARY)
    assert await totals(stores, alice, FEBRUARY) == (0, 6000)


async def test_a_batch_over_the_cap_names_the_item_and_stores_nothing(stores: Stores, alice: Account) -> None:
    await stores.ledger.append([LedgerEntry(alice.id, "grant", 10_000)], T0)
    await stores.spending.set_monthly_limit(alice.id, 1000, JANUARY)
    batch = [job_row(alice, hold_units=300, max_cost_units=300) for _ in range(4)]
    with pytest.raises(SpendingLimitReached) as refused:
        await stores.jobs.insert_jobs(batch, T0)
    assert refused.value.item == 3 and refused.value.message.startswith("item 3: ")
    assert "0.0000009 AITBC with the batch's jobs before it" in refused.value.message
    assert (await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 10, None)).total == 0
    assert await totals(stores, alice) == (0, 0)
    assert len(await stores.jobs.insert_jobs(batch[:3], T0)) == 3


async def test_racing_submits_never_pass_the_cap(stores: Stores, alice: Account) -> None:
    await stores.ledger.append([LedgerEntry(alice.id, "grant", 10_000)], T0)
    await stores.spending.set_monthly_limit(alice.id, 1000, JANUARY)
    racers = [stores.jobs.insert_job(job_row(alice, hold_units=100, max_cost_units=100), T0) for _ in range(20)]
    answers = await asyncio.gather(*racers, return_exceptions=True)
    assert sum(not isinstance(answer, BaseException) for answer in answers) == 10
    assert all(isinstance(answer, SpendingLimitReached) for answer in answers if isinstance(answer, BaseException))
    assert await totals(stores, alice) == (0, 1000)
    assert (await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 100, None)).total == 10


async def test_the_alert_is_recorded_once_per_month_and_threshold(stores: Stores, alice: Account) -> None:
    await stores.ledger.append([LedgerEntry(alice.id, "grant", 100_000)], T0)
    assert (await stores.spending.set_alert(alice.id, 300, JANUARY)).alert_at_units == 300  # type: ignore[union-attr]
    jobs = [await submit(stores, alice, 500) for _ in range(6)]
    assert (await settle(stores, jobs[0], 200)).alerts == ()
    assert await stores.spending.last_alert(alice.id) is None
    crossed = await settle(stores, jobs[1], 200)  # 400 charged: past 300
    (event,) = crossed.alerts
    assert (event.kind, event.job_id, event.status, event.seq) == (
        ALERT_EVENT,
        jobs[1].id,
        "canceled",
        crossed.event.seq + 1,
    )
    assert event.data == {
        "alert": "monthly_spending",
        "month": "2026-01",
        "threshold": "0.0000003",
        "charged": "0.0000004",
        "fired_at": "2026-01-01T00:00:10.000Z",
    }
    last = await stores.spending.last_alert(alice.id)
    assert last is not None and (last.month, last.threshold_units, last.charged_units, last.job_id) == (
        JANUARY,
        300,
        400,
        jobs[1].id,
    )
    assert (await settle(stores, jobs[2], 100)).alerts == ()  # once a month
    fired = await stores.spending.spending(alice.id, JANUARY)
    assert fired is not None and fired.alert_fired_this_month
    stored = await stores.jobs.events_since(alice.id, 0, None, 100)
    assert [e.seq for e in stored if e.kind == ALERT_EVENT] == [event.seq]  # in the account's sequence

    # A new threshold fires at the next charge (the month is already past it); going back to one that fired
    # this month does not fire it again.
    moved = await stores.spending.set_alert(alice.id, 350, JANUARY)
    assert moved is not None and not moved.alert_fired_this_month
    (again,) = (await settle(stores, jobs[3], 10)).alerts
    assert again.data["threshold"] == "0.00000035" and again.data["charged"] == "0.00000051"
    await stores.spending.set_alert(alice.id, 300, JANUARY)
    assert (await settle(stores, jobs[4], 10)).alerts == ()

    # Next month the same threshold fires again, when that month's charges reach it.
    february = IN_FEBRUARY + timedelta(days=3)
    assert (await settle(stores, jobs[5], 299, february)).alerts == ()
    late = await submit(stores, alice, 500, february)
    (next_month,) = (await settle(stores, late, 1, february)).alerts
    assert next_month.data["month"] == "2026-02" and next_month.data["charged"] == "0.0000003"
    assert await totals(stores, alice, FEBRUARY) == (300, 0)


async def test_settings_of_a_missing_account_change_nothing(stores: Stores, alice: Account) -> None:
    assert await stores.spending.set_monthly_limit("acct_missing", 5, JANUARY) is None
    assert await stores.spending.set_alert("acct_missing", 5, JANUARY) is None
    assert await stores.spending.spending("acct_missing", JANUARY) is None
    mine = await stores.spending.spending(alice.id, JANUARY)
    assert mine is not None and (mine.monthly_limit_units, mine.alert_at_units) == (None, None)
