"""The SDK's `run` (submit, then wait on the job until it ends) and its filters by name and tag, through
`AsyncClient` against the real app with a real miner agent: a finished job comes back with its result, a failed
or canceled one raises carrying the job, a timeout raises with the job as it stands, and a submit whose answer
is lost is retried under the same Idempotency-Key without making the job twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aitbc.domain.errors import InvalidInput
from aitbc.sdk.client import AsyncClient
from aitbc.sdk.errors import JobCanceledError, JobFailedError, JobStillRunning
from tests.miner.inprocess import BASE_URL, InProcess, in_process
from tests.test_job_waits import READY_SECONDS, miner_running


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


def sdk(stack: InProcess, transport: httpx.AsyncBaseTransport | None = None) -> AsyncClient:
    return AsyncClient(BASE_URL, stack.client_key, transport=transport or stack.transport)


class LosesFirstSubmitAnswer(httpx.AsyncBaseTransport):
    """The real transport, except that the answer to the first submit is lost after the coordinator made it
    (a connection cut while the answer was held)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.submits = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/jobs":
            self.submits += 1
            if self.submits == 1:
                raise httpx.ReadError("connection lost", request=request)
        return response


async def test_run_answers_the_finished_job_with_its_result(stack: InProcess) -> None:
    async with miner_running(stack), sdk(stack) as client:
        job = await client.run(type="command", input="echo hi", name="greeting", tags=["sdk"])
        assert (job.status, job.result, job.name, job.tags) == ("completed", "hi\n", "greeting", ["sdk"])
        with pytest.raises(JobFailedError) as failed:
            await client.run(type="command", input="echo oops >&2; exit 3")
        assert (failed.value.job.status, failed.value.job.exit_code) == ("failed", 3)
        assert "runtime_error" in failed.value.message


async def test_run_raises_with_the_job_when_it_is_canceled(stack: InProcess) -> None:
    async with miner_running(stack), sdk(stack) as client:
        running = asyncio.create_task(client.run(type="command", input="sleep 600", tags=["long"], wait=1))
        page = None

        def started() -> bool:
            return page is not None and page.total == 1 and page.jobs[0].status == "running"

        async with asyncio.timeout(READY_SECONDS):
            while not started():  # `run` follows the job through repeated one-second waits meanwhile
                page = await client.list(tag="long", status=["running"])
                await asyncio.sleep(0.05)
        assert not running.done()
        canceled = await client.cancel_matching(tag="long")
        assert (canceled.canceling, canceled.more) == (1, False)
        with pytest.raises(JobCanceledError) as raised:
            await asyncio.wait_for(running, timeout=60)
        assert raised.value.job.status == "canceled"


async def test_run_gives_up_at_its_timeout_with_the_job_as_it_stands(stack: InProcess) -> None:
    async with sdk(stack) as client:
        with pytest.raises(JobStillRunning) as raised:
            await client.run(type="nobody-runs-this", wait=1, timeout=1.5)
        assert raised.value.job.status == "pending"
        for wrong in ({"wait": 0}, {"wait": 61}, {"timeout": 0}):
            with pytest.raises(ValueError, match=r"wait|timeout"):
                await client.run(type="command", **wrong)  # type: ignore[arg-type]
        assert (await client.list()).total == 1  # the refused calls submitted nothing


async def test_a_lost_submit_answer_is_retried_without_a_second_job(stack: InProcess) -> None:
    transport = LosesFirstSubmitAnswer(stack.transport)
    async with miner_running(stack), sdk(stack, transport) as client:
        job = await client.run(type="command", input="echo once")
        assert (job.status, job.result, transport.submits) == ("completed", "once\n", 2)
        assert (await client.list()).total == 1


async def test_lists_exports_and_cancels_filter_by_name_and_tag(stack: InProcess) -> None:
    async with sdk(stack) as client:
        tagged = [await client.submit(type="nobody-runs-this", tags=["t1", "shared"], name="n1") for _ in range(3)]
        other = await client.submit(type="nobody-runs-this", tags=["shared"])
        assert {job.job_id for job in (await client.list(tag="t1")).jobs} == {job.job_id for job in tagged}
        assert (await client.list(name="n1", tag="shared")).total == 3
        assert [job.job_id async for job in client.iter_jobs(tag="shared", limit=1)] == [
            job.job_id for job in sorted([*tagged, other], key=lambda j: (j.created_at, j.job_id), reverse=True)
        ]
        exported = b"".join([chunk async for chunk in client.export("json", tag="shared", name="n1")])
        assert sorted(job["job_id"] for job in json.loads(exported)) == sorted(job.job_id for job in tagged)
        result = await client.cancel_matching(tag="t1", status=["pending"], limit=2)
        assert (result.canceled, result.more) == (2, True)
        with pytest.raises(InvalidInput, match="all"):
            await client.cancel_matching()
        result = await client.cancel_matching(all=True)
        assert (result.canceled, result.more) == (2, False)
