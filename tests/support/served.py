"""A served coordinator: real uvicorn on a free port. In a thread of the test process (`served_in_thread`:
no process start-up, for tests that need real sockets) or as `aitbc serve` in a `Stack` (for tests that
signal, kill or restart it); both are ready when `GET /v1/health` answers."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from aitbc.api.app import create_app
from aitbc.api.server import CoordinatorServer
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.support.waiting import wait_until

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def healthy(url: str) -> bool:
    """Whether the coordinator at `url` answers its health check (False while nothing listens yet)."""
    try:
        return httpx.get(f"{url}/v1/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def served_in_thread(settings: Settings) -> Iterator[str]:
    """The coordinator `aitbc serve` runs (same app, same server class), in a thread; yields its URL."""
    with served_app_in_thread(create_app(settings)) as url:
        yield url


@contextmanager
def served_app_in_thread(app: FastAPI) -> Iterator[str]:
    """`app` served as `aitbc serve` serves it, in a thread; yields its URL. Once it answers, the test can
    reach its coordinator (`app.state.coordinator`), e.g. to watch its database."""
    port = free_port()
    server = CoordinatorServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        if not thread.is_alive():
            raise AssertionError("the test server stopped while starting")
        return server.started

    wait_until(started, START_TIMEOUT, interval=0.02, what="the test server to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass(frozen=True)
class ServedForCli:
    """A coordinator served in a thread, the CLI of this process pointed at it (its environment), and keys."""

    url: str
    client_key: str
    miner_key: str


@contextmanager
def served_for_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServedForCli]:
    """What a CLI test in this process needs: a bootstrapped coordinator (a client key, a miner key of account
    `farm`) served in a thread, and `AITBC_URL`, `AITBC_API_KEY`, a profile file and a wide terminal set."""
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False)

    async def bootstrap() -> tuple[str, str]:
        async with coordinator_session(settings) as coordinator:
            _admin, user = await coordinator.accounts.bootstrap()
            miner = await coordinator.accounts.create_key("farm", Role.MINER)
        return user.secret, miner.secret

    client_key, miner_key = asyncio.run(bootstrap())
    with served_in_thread(settings) as url:
        monkeypatch.setenv("AITBC_URL", url)
        monkeypatch.setenv("AITBC_API_KEY", client_key)
        monkeypatch.setenv("AITBC_CONFIG", str(tmp_path / "profile.json"))
        monkeypatch.setenv("COLUMNS", "200")
        yield ServedForCli(url, client_key, miner_key)
