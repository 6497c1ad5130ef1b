"""Watchers that drop leave nothing behind, and a coordinator stops cleanly on SIGTERM, with `aitbc serve`
and `aitbc miner run` as real processes.

Before the fix, a dropped watcher left an `asyncio.Queue.get()` task pending that the garbage collector
later reported ("Task was destroyed but it is pending!"), and a SIGTERM waited for the miners' held claim
and heartbeat long polls until uvicorn's grace ran out ("timeout graceful shutdown exceeded") and
cancelled them mid-request. `GET /v1/admin/runtime` runs a GC pass before it counts tasks, so a leaked
task is both counted and logged at that moment, not at some later collection.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket

from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e
WATCHERS = 20
LEAKED_TASK = "Task was destroyed but it is pending!"
GRACE_EXCEEDED = "timeout graceful shutdown exceeded"


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    made = Stack(tmp_path / "stack", database_url=database_url)
    made.root.mkdir()
    try:
        made.start_server()
        yield made
    finally:
        made.close()


def runtime(stack: Stack) -> dict[str, Any]:
    answer = httpx.get(f"{stack.url}/v1/admin/runtime", headers={"X-Api-Key": stack.admin_key}, timeout=10)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def open_watcher(stack: Stack, query: str = "") -> websocket.WebSocket:
    url = stack.url.replace("http://", "ws://") + "/v1/jobs/ws" + query
    return websocket.create_connection(url, header=[f"X-Api-Key: {stack.client_key}"], timeout=10)


def watch_and_drop(stack: Stack, idle: dict[str, Any]) -> dict[str, Any]:
    """WATCHERS watchers (some on one job, resuming from its start) see a job submitted and cancelled, then
    drop, half with a close frame and half by just ending the connection; the runtime once they are gone."""
    job_id = stack.post_job(type="command", input="echo never runs: no miner takes command jobs here")
    watchers = [open_watcher(stack, f"?job_id={job_id}&since=0" if i % 3 == 0 else "") for i in range(WATCHERS)]
    wait_until(lambda: runtime(stack)["subscriptions"] == idle["subscriptions"] + WATCHERS, 10, what="every watcher")
    assert job_id in watchers[0].recv()  # the job's backlog reached a resuming watcher
    cancel = httpx.post(f"{stack.url}/v1/jobs/{job_id}/cancel", headers={"X-Api-Key": stack.client_key})
    assert cancel.status_code == 200, cancel.text  # an event for every live watcher as they drop
    for index, watcher in enumerate(watchers):
        if index % 2:
            watcher.close()  # a clean close frame
        else:
            watcher.sock.close()  # the connection just ends (a laptop lid, a killed process)
    wait_until(lambda: runtime(stack)["subscriptions"] == idle["subscriptions"], 10, what="subscriptions to end")
    return wait_until(
        # at most the idle count: a periodic pass (the sweeper, the reaper) may have been running when it was read
        lambda: (now := runtime(stack))["asyncio_tasks"] <= idle["asyncio_tasks"] and now,
        30,
        what="idle tasks",
    )


def test_dropped_watchers_leave_nothing_behind_and_sigterm_stops_at_once(stack: Stack) -> None:
    idle = runtime(stack)
    warmed = watch_and_drop(stack, idle)  # the first round may open database connections the pool keeps
    watch_and_drop(stack, idle)
    # A leak would be a descriptor (or more) per watcher, WATCHERS a round. The database pool may still keep
    # a connection or two more than after the first round (PostgreSQL's holds up to 10), hence the slack.
    wait_until(
        lambda: runtime(stack)["open_files"] < warmed["open_files"] + WATCHERS // 2, 10, what="no file per watcher"
    )
    assert LEAKED_TASK not in (stack.root / "serve.log").read_text()

    # A real miner holds a claim and a heartbeat long poll, and a watcher stays open; then SIGTERM.
    stack.start_miner("held", "--claim-wait", "30")
    wait_until(lambda: runtime(stack)["asyncio_tasks"] >= idle["asyncio_tasks"] + 2, 30, what="the long polls")
    still_open = open_watcher(stack)
    assert stack.server is not None
    stack.server.send_signal(signal.SIGTERM)
    assert stack.server.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    stack.server = None
    closing = wait_until(lambda: _closed(still_open), 10, what="the watcher to be closed")
    assert closing
    log = (stack.root / "serve.log").read_text()
    assert GRACE_EXCEEDED not in log, log
    assert LEAKED_TASK not in log, log
    assert "Exception in ASGI application" not in log, log


def _closed(watcher: websocket.WebSocket) -> bool:
    try:
        watcher.recv()
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return True
    return not watcher.connected
