"""The real agent against the real app: its claim starts the jobs it takes (no `start` call per job), and with
several slots results ready at the same time are completed in one batch call, while a lone one goes at once."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aitbc.miner.agent import Agent
from aitbc.miner.config import MinerConfig
from aitbc.miner.coordinator_client import CoordinatorClient
from aitbc.miner.runtimes.command import CommandRuntime
from aitbc.miner.sandboxed_run import Isolation
from tests.miner.inprocess import BASE_URL, CountingTransport, InProcess, in_process
from tests.support.stack import Stack

JOBS = 4


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


class HeldFirstComplete(CountingTransport):
    """The real transport, holding the miner's first completion call (of one job or several) until every other
    job's completion is ready (waiting in the client): they are then ready while that call is on its way, as on
    a busy miner, and must go together in one batch call."""

    def __init__(self, inner: httpx.AsyncBaseTransport, jobs: int) -> None:
        super().__init__(inner)
        self.jobs = jobs
        self.client: CoordinatorClient | None = None
        self.first_call_jobs = 0  # how many jobs the held first call completed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/complete") and not self.first_call_jobs:
            lone = re.search(r"/jobs/job_[^/]+/complete$", request.url.path)
            self.first_call_jobs = 1 if lone else len(json.loads(request.content)["jobs"])
            assert self.client is not None
            deadline = asyncio.get_running_loop().time() + 30  # past it, the call counts below say what came
            while (
                self.client.completions_waiting < self.jobs - self.first_call_jobs
                and asyncio.get_running_loop().time() < deadline
            ):
                await asyncio.sleep(0.01)  # the other jobs finish, upload and hand over their completions
        return await super().handle_async_request(request)


def agent(stack: InProcess, transport: httpx.AsyncBaseTransport, max_jobs: int) -> Agent:
    client = CoordinatorClient(BASE_URL, stack.miner_key, transport=transport)
    if isinstance(transport, HeldFirstComplete):
        transport.client = client
    work_dir = stack.root / "miners" / "batcher"
    config = MinerConfig(
        url=BASE_URL,
        api_key=stack.miner_key,
        name="batcher",
        work_dir=work_dir,
        drain=True,
        claim_wait_seconds=2,
        max_jobs=max_jobs,
    )
    runtime = CommandRuntime(Isolation.for_miner(config), kill_grace_seconds=0.5)
    return Agent(config, {"command": runtime}, client)


async def test_an_agent_with_several_slots_claims_and_starts_at_once_and_completes_in_a_batch(
    stack: InProcess,
) -> None:
    job_ids = [await stack.submit(type="command", input=f"echo job {n}") for n in range(JOBS)]
    transport = HeldFirstComplete(stack.transport, JOBS)
    await asyncio.wait_for(agent(stack, transport, max_jobs=JOBS).run(), timeout=120)
    for job_id in job_ids:
        job = await stack.job(job_id)
        assert job["status"] == "completed", job
        _, files = await stack.package(job_id)
        assert files["result.txt"].decode().startswith("job ")
    assert transport.count("/start") == 0  # the claim started them
    # Those ready while the first call was on its way went in one call (all four in the first, if they finished
    # together).
    assert transport.count("/complete") == (1 if transport.first_call_jobs == JOBS else 2)
    assert transport.count("/jobs/complete") >= 1
    # What the coordinator recorded: every job's history is claim, start, complete.
    for job_id in job_ids:
        moves = [e.data.get("move") for e in await stack.coordinator.job_store.job_events(job_id, ["status"])]
        assert moves[-3:] == ["claim", "start", "complete"]


async def test_an_agent_with_one_slot_starts_with_its_claims_and_completes_job_by_job(stack: InProcess) -> None:
    job_ids = [await stack.submit(type="command", input="echo one") for _ in range(2)]
    transport = CountingTransport(stack.transport)
    await asyncio.wait_for(agent(stack, transport, max_jobs=1).run(), timeout=120)
    assert [(await stack.job(job_id))["status"] for job_id in job_ids] == ["completed", "completed"]
    assert transport.count("/start") == 0 and transport.count("/jobs/complete") == 0
    for job_id in job_ids:  # still two moves in the history: the claim's transaction made both
        moves = [e.data.get("move") for e in await stack.coordinator.job_store.job_events(job_id, ["status"])]
        assert moves[-3:] == ["claim", "start", "complete"]


def test_a_real_miner_with_four_slots_starts_jobs_with_its_claims(tmp_path: Path) -> None:
    """`aitbc miner run --max-jobs 4` against `aitbc serve`, read in the coordinator's access log: no `start`
    call at all (its claims started the jobs), and never more completion calls than jobs."""
    stack = Stack(tmp_path, log_level="info")
    stack.start_server()
    try:
        jobs = [stack.post_job(type="command", input=f"echo job {n}") for n in range(8)]
        miner = stack.start_miner("slots", "--allow-command", "--drain", "--max-jobs", "4")
        assert miner.wait(timeout=60) == 0, stack.miner_log("slots")
        for job_id in jobs:
            assert stack.job(job_id)["status"] == "completed"
        requests = [line for line in stack.server_log.read_text().splitlines() if '"POST /v1/miners/' in line]
        assert not [line for line in requests if "/start " in line]
        singles = [line for line in requests if re.search(r"/jobs/job_[^/ ]+/complete ", line)]
        batches = [line for line in requests if "/jobs/complete " in line]
        assert singles or batches
        assert len(singles) + len(batches) <= len(jobs)
    finally:
        stack.close()
