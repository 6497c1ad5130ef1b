"""`JobStore.insert_jobs`: a batch of one account's jobs in one transaction — an answer per job in order,
events numbered in order, holds on the balance, replays of used keys — or, if one does not fit, none of them
with the error naming that job."""

from __future__ import annotations

import asyncio

import pytest

from aitbc.domain.accounts import Account
from aitbc.domain.errors import Conflict, PaymentRequired, RateLimited
from aitbc.storage.interfaces import JobFilter, LedgerEntry
from tests.store_contract.conftest import T0, Stores, job_row


async def test_a_batch_is_stored_in_order_with_its_events_and_holds(stores: Stores, alice: Account) -> None:
    await stores.ledger.append([LedgerEntry(alice.id, "grant", 1000)], T0)
    first, _ = await stores.jobs.insert_job(job_row(alice, idempotency_key="old"), T0)
    batch = [
        job_row(alice, idempotency_key="a", hold_units=100),
        job_row(alice, idempotency_key="old", hold_units=100),  # a replay: holds nothing more
        job_row(alice, hold_units=200),
    ]
    answers = await stores.jobs.insert_jobs(batch, T0, max_active=3)
    assert [job.id for job, _ in answers] == [batch[0].id, first.id, batch[2].id]
    assert [event.seq if event else None for _, event in answers] == [2, None, 3]
    assert await stores.ledger.balance_units(alice.id) == 700
    again = await stores.jobs.insert_jobs(batch[:2], T0)
    assert [(job.id, event) for job, event in again] == [(batch[0].id, None), (first.id, None)]
    assert (await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 10, None)).total == 3


async def test_a_batch_that_does_not_fit_stores_nothing_and_names_the_job(stores: Stores, alice: Account) -> None:
    await stores.ledger.append([LedgerEntry(alice.id, "grant", 1000)], T0)
    with pytest.raises(PaymentRequired) as short:
        await stores.jobs.insert_jobs([job_row(alice, hold_units=400) for _ in range(3)], T0)
    assert short.value.item == 2
    with pytest.raises(RateLimited) as capped:
        await stores.jobs.insert_jobs([job_row(alice) for _ in range(3)], T0, max_active=2)
    assert capped.value.item == 2
    await stores.jobs.insert_job(job_row(alice, idempotency_key="k", request_hash="b" * 64), T0)
    with pytest.raises(Conflict) as reused:
        await stores.jobs.insert_jobs([job_row(alice), job_row(alice, idempotency_key="k")], T0)
    assert reused.value.item == 1
    assert (await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 10, None)).total == 1
    assert await stores.ledger.balance_units(alice.id) == 1000


async def test_racing_batches_with_one_key_store_one_job(stores: Stores, alice: Account) -> None:
    batches = [[job_row(alice, idempotency_key="same"), job_row(alice)] for _ in range(4)]
    answers = await asyncio.gather(*(stores.jobs.insert_jobs(batch, T0) for batch in batches))
    assert len({answer[0][0].id for answer in answers}) == 1
    assert sum(answer[0][1] is not None for answer in answers) == 1
    assert (await stores.jobs.list_jobs(JobFilter(account_id=alice.id), 10, None)).total == 5
