"""`WS /v1/jobs/ws` over a real socket: the seed's websocket-client snippet, resume with `since`, tenancy."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websocket

from aitbc.domain.plans import Role
from aitbc.sdk.client import Client
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.support.served import served_in_thread


async def _make_keys(settings: Settings) -> dict[str, str]:
    """Keys made on the data folder before the server starts, by a coordinator of their own (the server's
    lives on its own event loop, in its own thread)."""
    async with coordinator_session(settings) as coordinator:
        return {
            name: (await coordinator.accounts.create_key(name, role)).secret
            for name, role in (("alice", Role.CLIENT), ("bob", Role.CLIENT), ("farm", Role.MINER))
        }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    settings = Settings(data_dir=tmp_path / "data")
    made = asyncio.run(_make_keys(settings))
    with served_in_thread(settings) as url:
        yield url, made


def test_seed_websocket_snippet_receives_events(server: tuple[str, dict[str, str]]) -> None:
    url, keys = server
    received: list[dict[str, object]] = []
    opened = threading.Event()

    def on_message(ws: websocket.WebSocketApp, message: str) -> None:
        received.append(json.loads(message))
        if len(received) >= 2:
            ws.close()

    ws = websocket.WebSocketApp(
        url.replace("http", "ws") + "/v1/jobs/ws",
        header={"X-Api-Key": keys["alice"]},
        on_message=on_message,
        on_open=lambda _ws: opened.set(),
    )
    runner = threading.Thread(target=ws.run_forever, daemon=True)
    runner.start()
    assert opened.wait(10)
    with httpx.Client(base_url=url, headers={"X-Api-Key": keys["alice"]}) as http:
        job_id = http.post("/v1/jobs", json={"type": "command", "input": "x"}).json()["job_id"]
        http.post(f"/v1/jobs/{job_id}/cancel")
    runner.join(10)
    assert [(m["job_id"], m["status"]) for m in received] == [(job_id, "pending"), (job_id, "canceled")]
    assert all({"seq", "job_id", "status", "progress"} <= m.keys() for m in received)
    assert received[1]["seq"] == received[0]["seq"] + 1  # type: ignore[operator]


def test_api_key_query_parameter_and_resume_without_gaps(server: tuple[str, dict[str, str]]) -> None:
    url, keys = server
    with Client(url, keys["alice"]) as client:
        jobs = [client.submit(type="command", input=str(i)).job_id for i in range(3)]
        for job_id in jobs:
            client.cancel(job_id)
    socket = websocket.create_connection(
        url.replace("http", "ws") + f"/v1/jobs/ws?api_key={keys['alice']}&since=2", timeout=10
    )
    messages = [json.loads(socket.recv()) for _ in range(4)]
    socket.close()
    assert [m["seq"] for m in messages] == [3, 4, 5, 6]
    with Client(url, keys["alice"]) as client:
        events = client.events(job_id=jobs[2], since=0)
        first = next(events)
        second = next(events)
        events.close()
    assert (first.job_id, first.status.value, second.status.value) == (jobs[2], "pending", "canceled")


def test_websocket_refuses_missing_key_and_other_tenants_jobs(server: tuple[str, dict[str, str]]) -> None:
    url, keys = server
    with Client(url, keys["alice"]) as client:
        job_id = client.submit(type="command", input="x").job_id
    ws_url = url.replace("http", "ws") + "/v1/jobs/ws"
    for query, headers, code in (
        ("", {}, 4401),
        ("", {"X-Api-Key": "aitbc_bogus"}, 4401),
        (f"?job_id={job_id}", {"X-Api-Key": keys["bob"]}, 4404),
        ("?since=-1", {"X-Api-Key": keys["alice"]}, 4400),
    ):
        socket = websocket.create_connection(ws_url + query, header=headers, timeout=10)
        answer = json.loads(socket.recv())
        assert answer["code"] == code and answer["error"]
        assert closed_by_server(socket)
        socket.close()


def closed_by_server(socket: websocket.WebSocket) -> bool:
    """After its error message the server closes: the next reads give the close frame, then the end."""
    try:
        for _ in range(3):
            if socket.recv() == "":
                return True
    except websocket.WebSocketConnectionClosedException:
        return True
    return False


def test_live_events_reach_only_their_account(server: tuple[str, dict[str, str]]) -> None:
    url, keys = server
    socket = websocket.create_connection(
        url.replace("http", "ws") + "/v1/jobs/ws", header={"X-Api-Key": keys["bob"]}, timeout=3
    )
    with Client(url, keys["alice"]) as alice, Client(url, keys["bob"]) as bob:
        alice.submit(type="command", input="secret")
        mine = bob.submit(type="command", input="mine").job_id
    message = json.loads(socket.recv())
    socket.close()
    assert message["job_id"] == mine
