"""The SDK and the CLI wait out `429 Retry-After`, against a real coordinator on a socket whose free plan allows
3 requests a minute. Its clock is the test's: it stands a second before a minute ends, so the coordinator asks
for a 1 s wait, and the test moves it on when the client says it is waiting (as that second passes).

Reads and submits with an Idempotency-Key are retried, a bounded number of times and seconds; a POST without a
key is not; the CLI says so on stderr and gives its submits a key of its own, so a retried submit makes one job.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from aitbc.api.app import create_app
from aitbc.domain.clock import ManualClock
from aitbc.domain.errors import RateLimited
from aitbc.domain.plans import DEFAULT_PLAN_LIMITS, Plan, PlanLimits
from aitbc.sdk.client import AsyncClient, Client
from aitbc.sdk.rate_limits import RateLimitRetries
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.support.running_cli import RunningCli
from tests.support.served import served_app_in_thread
from tests.support.stack import AITBC

PER_MINUTE = 3
NOTICE = "rate limited; retrying in 1 s"


@dataclass
class Limited:
    url: str
    client_key: str
    admin_key: str
    clock: ManualClock
    root: Path

    def use_up(self) -> None:
        """Spend what is left of this minute's requests (reads through plain HTTP), until one is refused."""
        with httpx.Client(base_url=self.url, headers={"X-Api-Key": self.client_key}) as http:
            for _ in range(PER_MINUTE + 1):
                if http.get("/v1/jobs").status_code == 429:
                    return
        raise AssertionError("the plan's limit was never reached")

    def jobs(self) -> list[str]:
        """The client's jobs, read in a minute of its own (the test's last request)."""
        self.clock.advance(60)
        with httpx.Client(base_url=self.url, headers={"X-Api-Key": self.client_key}) as http:
            answer = http.get("/v1/jobs", params={"limit": 100})
        assert answer.status_code == 200, answer.text
        return [job["job_id"] for job in answer.json()["jobs"]]


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Limited]:
    plans = {**DEFAULT_PLAN_LIMITS, Plan.FREE: PlanLimits(7, PER_MINUTE, 1000, 50)}
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False, plan_limits=plans)
    clock = ManualClock(datetime(2026, 1, 1, 12, 0, 59, tzinfo=UTC))

    async def bootstrap() -> tuple[str, str]:
        async with coordinator_session(settings, clock) as coordinator:
            admin, user = await coordinator.accounts.bootstrap()
        return admin.secret, user.secret

    admin_key, client_key = asyncio.run(bootstrap())
    with served_app_in_thread(create_app(settings, clock)) as url:
        yield Limited(url, client_key, admin_key, clock, tmp_path)


def waiting_moves_the_clock(limited: Limited, told: list[str]) -> Client:
    def notice(message: str) -> None:
        told.append(message)
        limited.clock.advance(1)  # the coordinator's second passes while the client waits it out

    return Client(limited.url, limited.client_key, notices=notice)


def test_a_read_and_a_keyed_submit_wait_out_the_limit(limited: Limited) -> None:
    told: list[str] = []
    with waiting_moves_the_clock(limited, told) as client:
        limited.use_up()
        assert client.list().total == 0
        assert told == [NOTICE]

        limited.clock.advance(59)  # to the next minute's last second, its requests spent
        limited.use_up()
        job = client.submit(type="command", input="x", idempotency_key="retry-me")
        assert told == [NOTICE, NOTICE]
    assert limited.jobs() == [job.job_id]


def test_a_post_without_a_key_is_not_retried_and_a_wait_past_the_bound_is_not_waited(limited: Limited) -> None:
    told: list[str] = []
    with waiting_moves_the_clock(limited, told) as client:
        limited.use_up()
        with pytest.raises(RateLimited) as refused:
            client.submit(type="command", input="x")
        assert refused.value.retry_after == 1 and told == []
    with Client(limited.url, limited.client_key, notices=told.append, rate_limits=RateLimitRetries(2, 0.5)) as short:
        with pytest.raises(RateLimited):
            short.list()  # 1 s asked for, 0.5 s allowed in all
    with Client(limited.url, limited.client_key, notices=told.append, rate_limits=RateLimitRetries(2, 60)) as few:
        with pytest.raises(RateLimited):
            few.list()  # the clock stands still here: two waits, then the refusal
    assert told == [NOTICE, NOTICE]
    assert limited.jobs() == []


async def test_the_async_client_waits_too(limited: Limited) -> None:
    told: list[str] = []

    def notice(message: str) -> None:
        told.append(message)
        limited.clock.advance(1)

    async with AsyncClient(limited.url, limited.client_key, notices=notice) as client:
        await asyncio.to_thread(limited.use_up)
        assert (await client.list()).total == 0
    assert told == [NOTICE]


def test_the_cli_says_it_waits_and_its_retried_submit_makes_one_job(limited: Limited) -> None:
    environment = {
        **os.environ,
        "AITBC_URL": limited.url,
        "AITBC_API_KEY": limited.client_key,
        "AITBC_CONFIG": str(limited.root / "profile.json"),
        "PYTHONUNBUFFERED": "1",
    }
    limited.use_up()
    submit = RunningCli([*AITBC, "client", "submit", "--type", "command", "--input", "echo hi"], environment)
    try:
        submit.wait_for_line(lambda line: line == NOTICE, stream="stderr")
        limited.clock.advance(1)
        assert submit.wait() == 0, submit.stderr
    finally:
        submit.kill()
    (job_id,) = submit.stdout_lines
    assert limited.jobs() == [job_id]
    assert "Traceback" not in submit.stderr
