"""A client that hangs up while it sends a request body is not a server error: no traceback, nothing stored."""

from __future__ import annotations

import logging

import pytest
from asgi_lifespan import LifespanManager

from aitbc.api.app import create_app
from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from tests.conftest import Keys

Message = dict[str, object]


async def test_a_submit_cut_off_mid_body_is_answered_quietly_and_stores_nothing(
    settings: Settings, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, clock)
    async with LifespanManager(app) as manager:
        coordinator = app.state.coordinator
        key = await Keys(coordinator).make("alice", Role.CLIENT)
        arrivals: list[Message] = [
            {"type": "http.request", "body": b'{"type": "command", "inp', "more_body": True},
            {"type": "http.disconnect"},  # what uvicorn hands the app once the client has closed the socket
        ]
        sent: list[Message] = []

        async def receive() -> Message:
            return arrivals.pop(0) if arrivals else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/jobs",
            "raw_path": b"/v1/jobs",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"aitbc.test"),
                (b"content-type", b"application/json"),
                (b"content-length", b"4000"),
                (b"x-api-key", key.encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("aitbc.test", 80),
        }
        with caplog.at_level(logging.INFO):
            await manager.app(scope, receive, send)  # raises if the disconnect escapes as a server error
        # (manager.app hands the lifespan's state to the request, as uvicorn does)
        starts = [message for message in sent if message["type"] == "http.response.start"]
        assert [start["status"] for start in starts] == [499]
        assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
        owner = await coordinator.accounts.authenticate(key)
        assert (await coordinator.jobs.list(owner, [], None, None, 10, None)).total == 0
