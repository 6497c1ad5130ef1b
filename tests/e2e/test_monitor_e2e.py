"""End to end: `aitbc monitor metrics --component jobs|miners` and `aitbc monitor dashboard` against `aitbc serve`
as a real process — the numbers of a known set of jobs, one frame with `--once`, the live view stopped by
Ctrl-C, and the dashboard's state following the events through a coordinator restart."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
from collections.abc import Callable

import anyio
import anyio.to_thread
import httpx
import pytest

from aitbc.cli.dashboard import Dashboard
from aitbc.sdk.client import AsyncClient, Client
from tests.support.protocol_miner import HttpMiner
from tests.support.stack import AITBC, Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


async def until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Wait, without blocking the event loop, until `check` holds."""
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.05)
    assert check(), what


async def test_monitor_metrics_as_the_guide_types_them(stack: Stack) -> None:
    normal = stack.post_job(type="command", input="a", priority="normal")
    high = stack.post_job(type="command", input="b", priority="high")
    low = stack.post_job(type="command", input="c", priority="low")
    canceled = httpx.post(f"{stack.url}/v1/jobs/{low}/cancel", headers={"X-Api-Key": stack.client_key}, timeout=10)
    assert canceled.status_code == 200, canceled.text

    metrics = stack.json("monitor", "metrics", "--component", "jobs")
    assert (metrics["total"], metrics["pending"], metrics["running"]) == (3, 2, 0)
    assert metrics["by_status"]["pending"] == 2 and metrics["by_status"]["canceled"] == 1
    assert [(place["job_id"], place["ahead"]) for place in metrics["queue"]] == [(normal, 1), (high, 0)]
    assert (metrics["rates"]["submitted"], metrics["rates"]["canceled"], metrics["rates"]["completed"]) == (3, 1, 0)
    assert metrics["waits"]["sample"] == 0
    human = stack.cli("monitor", "metrics", "--component", "jobs").stdout
    assert "Jobs: 3" in human and normal in human and "Ahead of it" in human and "last 60 min" in human

    assert stack.json("monitor", "metrics", "--component", "miners")["live_miners"] == 0
    miner_key = await anyio.to_thread.run_sync(stack.make_miner_key)
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        miner = HttpMiner(http, miner_key, name="farm", gpus=[{"model": "A100", "vram_gb": 80}])
        await miner.register()
    miners = stack.json("monitor", "metrics", "--component", "miners")
    assert (miners["live_miners"], miners["free_slots"], miners["gpus"]) == (1, 1, {"A100": 1})
    assert "1 live miners" in stack.cli("monitor", "metrics", "--component", "miners").stdout

    wrong = stack.cli("monitor", "metrics", "--component", "gpus", check=False)
    assert wrong.returncode == 2 and "'jobs', 'miners'" in wrong.stderr


def test_dashboard_once_shows_a_submitted_job(stack: Stack) -> None:
    job_id = stack.submit("--type", "command", "--input", "echo hi")
    frame = stack.cli("monitor", "dashboard", "--once").stdout
    assert job_id in frame and "pending" in frame and "Marketplace: 0 live miners" in frame
    assert "Jobs: 1" in frame and "Ctrl-C" not in frame
    snapshot = stack.json("monitor", "dashboard")
    assert [row["job_id"] for row in snapshot["jobs"]] == [job_id]
    assert snapshot["jobs"][0]["status"] == "pending" and snapshot["metrics"]["pending"] == 1


def test_the_live_dashboard_stops_cleanly_on_ctrl_c(stack: Stack) -> None:
    job_id = stack.submit("--type", "command", "--input", "echo hi")
    dashboard = subprocess.Popen(
        [*AITBC, "--debug", "monitor", "dashboard"],
        env=stack.environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert dashboard.stderr is not None
    seen = []
    for line in dashboard.stderr:  # until the view follows the events
        seen.append(line)
        if "debug: websocket open ws://" in line:
            break
    assert any("Following your jobs' events" in line for line in seen), seen
    dashboard.send_signal(signal.SIGINT)
    out, err = dashboard.communicate(timeout=30)
    err = "".join(seen) + err
    assert dashboard.returncode == 0, err
    assert "Traceback" not in err and job_id in out and "pending" in out
    assert stack.client_key not in out + err


async def test_the_dashboard_follows_events_through_a_coordinator_restart(stack: Stack) -> None:
    """The coordinator is killed under the dashboard's WebSocket: the drop shows, the SDK reconnects once it is
    back and resumes after the last event, and a job submitted meanwhile appears once."""
    async with AsyncClient(stack.url, stack.client_key) as api:
        board = Dashboard(api, shown=10)
        await board.snapshot()
        following = asyncio.create_task(board.run())
        try:
            first = stack.post_job(type="command", input="before")
            await until(lambda: any(row.job_id == first for row in board.rows), "the first job's row")
            seq_before = board.last_seq
            await anyio.to_thread.run_sync(stack.stop_server, signal.SIGKILL)  # the connection drops mid-stream
            await until(lambda: board.link.startswith("reconnecting"), "the drop to show")
            assert "cannot reach the coordinator" in board.link
            await anyio.to_thread.run_sync(stack.start_server)
            second = await anyio.to_thread.run_sync(lambda: stack.post_job(type="command", input="after"))
            # Its row, and an event again (a refresh may read the row before the events reconnect).
            await until(
                lambda: board.link.startswith("live") and any(row.job_id == second for row in board.rows),
                "the second job's row and the events followed again",
            )
            assert board.last_seq > seq_before
            ids = [row.job_id for row in board.rows]
            assert ids[:2] == [second, first] and len(ids) == len(set(ids))
            assert not following.done()
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
    listed = json.loads(stack.cli("client", "list", "--json").stdout)
    assert [job["job_id"] for job in listed["jobs"]] == [second, first]


def test_the_blocking_client_resumes_its_events_after_a_drop(stack: Stack) -> None:
    """`Client.resumable_events`, as the dashboard's `AsyncClient` one: through a killed coordinator, every
    event once, in order."""
    first = stack.post_job(type="command", input="before")
    drops: list[str] = []
    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def follow() -> None:
        with Client(stack.url, stack.client_key) as api:
            for event in api.resumable_events(0, on_drop=lambda error, _pause: drops.append(str(error))):
                seen.append((event.seq, event.job_id))
                if len({job for _, job in seen}) == 2:
                    break
        done.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    wait_until(lambda: seen, 30, what="the first job's event")
    stack.stop_server(signal.SIGKILL)
    wait_until(lambda: drops, 30, what="the drop")
    stack.start_server()
    second = stack.post_job(type="command", input="after")
    assert done.wait(30), seen
    assert [job for _, job in seen] == [first, second] and seen[0][0] < seen[1][0]
    assert "cannot reach the coordinator" in drops[0]
