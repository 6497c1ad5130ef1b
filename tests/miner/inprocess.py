"""The real coordinator app in-process (httpx's ASGI transport) with a real miner `Agent` speaking to it:
quick enough for the AI runtimes, whose libraries take seconds to import in every new process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from aitbc.api.app import create_app
from aitbc.domain.plans import Role
from aitbc.miner.agent import Agent
from aitbc.miner.config import MinerConfig
from aitbc.miner.coordinator_client import CoordinatorClient
from aitbc.miner.runtimes.interface import Runtime
from aitbc.settings import Settings
from aitbc.wiring import Coordinator
from tests.support.packages import read_package_async

BASE_URL = "http://aitbc.test"


class CountingTransport(httpx.AsyncBaseTransport):
    """The real ASGI transport, noting the path of every request a miner makes."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    def count(self, suffix: str) -> int:
        return sum(1 for path in self.paths if path.endswith(suffix))


@dataclass
class InProcess:
    http: httpx.AsyncClient
    transport: httpx.ASGITransport
    coordinator: Coordinator
    client_key: str
    miner_key: str
    root: Path
    miner_transport: CountingTransport
    admin_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.client_key}

    async def submit(self, **body: Any) -> str:
        answer = await self.http.post("/v1/jobs", json=body, headers=self.headers)
        assert answer.status_code in (200, 201), answer.text
        job_id: str = answer.json()["job_id"]
        return job_id

    async def upload(self, path: Path) -> str:
        answer = await self.http.post(
            "/v1/files", params={"name": path.name}, content=path.read_bytes(), headers=self.headers
        )
        assert answer.status_code == 201, answer.text
        file_id: str = answer.json()["file_id"]
        return file_id

    async def job(self, job_id: str) -> dict[str, Any]:
        answer = await self.http.get(f"/v1/jobs/{job_id}", headers=self.headers)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def agent(self, runtimes: dict[str, Runtime], name: str = "in-process", **options: Any) -> Agent:
        options = {"drain": True, "claim_wait_seconds": 2, "work_dir": self.root / "miners" / name, **options}
        config = MinerConfig(url=BASE_URL, api_key=self.miner_key, name=name, **options)
        client = CoordinatorClient(BASE_URL, self.miner_key, transport=self.miner_transport)
        return Agent(config, runtimes, client)

    async def drain(self, runtimes: dict[str, Runtime], timeout: float = 120, **options: Any) -> Agent:
        """Run a miner in drain mode: it takes every job it can, runs it, delivers it, and returns."""
        agent = self.agent(runtimes, **options)
        await asyncio.wait_for(agent.run(), timeout=timeout)
        return agent

    async def package(self, job_id: str) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The stored result's manifest and the bytes of each of its files, read through the HTTP API (with
        the admin key: the client's plan allows only so many requests a minute)."""
        package = await read_package_async(self.http, job_id, {"X-Api-Key": self.admin_key})
        return package.manifest, package.files


@asynccontextmanager
async def in_process(root: Path, **settings_options: Any) -> AsyncIterator[InProcess]:
    settings = Settings(data_dir=root / "data", run_reaper=False, **settings_options)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        coordinator: Coordinator = app.state.coordinator
        client_key = (await coordinator.accounts.create_key("tester", Role.CLIENT)).secret
        miner_key = (await coordinator.accounts.create_key("miners", Role.MINER)).secret
        admin_key = (await coordinator.accounts.create_key("admin", Role.ADMIN)).secret
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=60) as http:
            yield InProcess(
                http, transport, coordinator, client_key, miner_key, root, CountingTransport(transport), admin_key
            )
