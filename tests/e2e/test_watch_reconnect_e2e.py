"""`aitbc client watch` across a coordinator restart, with `aitbc serve` as a real process stopped and started
again on the same data folder and port: watch reconnects, resumes after the last event it showed, and ends with
the job's real outcome, printing no traceback; a coordinator that never comes back is exit code 3 and one line."""

from __future__ import annotations

import json

import httpx
import pytest

from aitbc.cli.common import EXIT_CONNECTION_LOST
from aitbc.protocol.jobs import EventMessage
from aitbc.sdk.client import AsyncClient
from tests.support.protocol_miner import HttpMiner
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


async def running_job(stack: Stack, http: httpx.AsyncClient) -> tuple[HttpMiner, str, str]:
    """A command job held by a protocol miner, started and at 30 %: (miner, job id, lease id)."""
    created = await http.post(
        "/v1/admin/keys", json={"name": "farm", "role": "miner"}, headers={"X-Api-Key": stack.admin_key}
    )
    assert created.status_code == 201, created.text
    miner = HttpMiner(http, created.json()["api_key"], name="held")
    await miner.register()
    job_id = stack.post_job(type="command", input="echo hi")
    (assignment,) = await miner.claim(wait=5)
    lease = assignment["lease_id"]
    for verb, body in (("start", {}), ("progress", {"progress": 30})):
        moved = await miner.call(verb, job_id, {"lease_id": lease, **body})
        assert moved.status_code == 200, moved.text
    return miner, job_id, lease


def events_of(lines: list[str]) -> list[dict[str, object]]:
    parsed = [json.loads(line) for line in lines]
    return [item for item in parsed if "seq" in item]


async def test_watch_survives_a_coordinator_restart_and_ends_with_the_jobs_outcome(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        miner, job_id, lease = await running_job(stack, http)
        watch = stack.cli_running("client", "watch", "--job-id", job_id, "--json")
        watch.wait_for_line(lambda line: json.loads(line)["progress"] == 30)

        stack.stop_server()
        watch.wait_for_line(lambda line: "reconnecting" in line, stream="stderr")
        stack.start_server()
        progressed = await miner.call("progress", job_id, {"lease_id": lease, "progress": 80})
        assert progressed.status_code == 200, progressed.text
        finished = await miner.finish(job_id, lease, {"result.txt": b"hi\n"})
        assert finished.status_code == 200, finished.text

        assert watch.wait() == 0, watch.stderr
    assert "Traceback" not in watch.stderr
    events = events_of(watch.stdout_lines)
    sequence = [event["seq"] for event in events]
    assert sequence == sorted(set(sequence)), "an event shown twice or out of order after the reconnect"
    assert [event["progress"] for event in events if event["kind"] == "progress"][-1] == 80
    assert events[-1]["status"] == "completed"
    final = json.loads(watch.stdout_lines[-1])
    assert final["job_id"] == job_id and final["status"] == "completed"


async def test_a_coordinator_that_never_returns_is_its_own_exit_code_and_one_line(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        _miner, job_id, _lease = await running_job(stack, http)
    watch = stack.cli_running("client", "watch", "--job-id", job_id, "--reconnect-timeout", "2", "--json")
    watch.wait_for_line(lambda line: json.loads(line)["status"] == "running")
    stack.stop_server()

    assert watch.wait() == EXIT_CONNECTION_LOST == 3
    assert "Traceback" not in watch.stderr
    errors = [line for line in watch.stderr_lines if line.startswith("Error:")]
    assert len(errors) == 1, watch.stderr
    assert len([line for line in watch.stderr_lines if "reconnecting" in line]) == 1, watch.stderr
    assert "could not reconnect within 2 s" in errors[0] and stack.url in errors[0]


async def test_the_async_sdk_follows_events_across_a_restart(stack: Stack) -> None:
    told: list[str] = []
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        miner, job_id, lease = await running_job(stack, http)
        async with AsyncClient(stack.url, stack.client_key, notices=told.append) as client:
            seen: list[EventMessage] = []
            async for event in client.resumable_events(0, job_id, reconnect_seconds=60):
                seen.append(event)
                if event.progress == 30 and not told:
                    stack.stop_server()
                    stack.start_server()
                    moved = await miner.call("progress", job_id, {"lease_id": lease, "progress": 80})
                    assert moved.status_code == 200, moved.text
                    assert (await miner.finish(job_id, lease, {"result.txt": b"hi\n"})).status_code == 200
                if event.status.is_terminal:
                    break
    assert len(told) == 1 and "reconnecting" in told[0]
    assert [event.seq for event in seen] == sorted({event.seq for event in seen})
    assert seen[-1].status.value == "completed" and 80 in {event.progress for event in seen}
