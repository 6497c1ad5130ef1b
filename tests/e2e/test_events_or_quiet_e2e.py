"""`events_or_quiet` (both clients): the job's events as they come, and a None each time the stream has been
quiet for `quiet_seconds` — what `watch` uses to read a pending job's `waiting_for` again — against a real
coordinator."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from aitbc.sdk.client import AsyncClient, Client
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def test_the_sync_client_yields_events_and_quiet_ticks(stack: Stack) -> None:
    job_id = stack.post_job(type="command", input="echo hi")  # no miner: it stays pending
    with Client(stack.url, stack.client_key) as api:
        stream = api.events_or_quiet(0, job_id, quiet_seconds=0.2)
        first, second, third = itertools.islice(stream, 3)
        assert first is not None and first.status.value == "pending" and first.job_id == job_id
        assert second is None and third is None  # nothing happened: quiet, twice
        api.cancel(job_id)
        ended = next(message for message in stream if message is not None)
        assert ended.status.value == "canceled"
        stream.close()
        # Without quiet_seconds there are no ticks: resumable_events is events_or_quiet(None) with them dropped.
        (replayed,) = itertools.islice(api.resumable_events(0, job_id), 1)
        assert replayed == first


def test_the_async_client_yields_events_and_quiet_ticks(stack: Stack) -> None:
    job_id = stack.post_job(type="command", input="echo hi")

    async def follow() -> list[str | None]:
        seen: list[str | None] = []
        async with AsyncClient(stack.url, stack.client_key) as api:
            stream = api.events_or_quiet(0, job_id, quiet_seconds=0.2)
            async for message in stream:
                seen.append(None if message is None else message.status.value)
                if seen.count(None) == 2 and "canceled" not in seen:
                    await api.cancel(job_id)
                if "canceled" in seen:
                    break
            await stream.aclose()
        return seen

    seen = asyncio.run(follow())
    assert seen[0] == "pending" and seen[1:3] == [None, None] and seen[-1] == "canceled"
