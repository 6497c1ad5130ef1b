"""`Client` (blocking) and `AsyncClient`: the whole client API of a coordinator, typed.

from aitbc import Client
with Client() as client:                       # AITBC_URL / AITBC_API_KEY / profile
    job = client.submit(type="command", input="echo hi")
    for event in client.events(job_id=job.job_id):
        ...
"""

from __future__ import annotations

import builtins
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import anyio
import httpx
import websockets
import websockets.sync.client

from aitbc.protocol.admin import AccountView, CreatedKeyView, KeyView
from aitbc.protocol.jobs import CancelResult, EventMessage, FileView, JobList, JobView
from aitbc.sdk import calls
from aitbc.sdk.calls import Call, model
from aitbc.sdk.config import resolve_connection
from aitbc.sdk.errors import ConnectionFailed

T = TypeVar("T")
UPLOAD_CHUNK = 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=120.0)


def _ws_url(base: str, job_id: str | None, since: int | None) -> str:
    query = {k: v for k, v in (("job_id", job_id), ("since", since)) if v is not None}
    scheme_url = "ws" + base[4:] if base.startswith("http") else base
    return f"{scheme_url}/v1/jobs/ws" + (f"?{urlencode(query)}" if query else "")


class _Base:
    def __init__(self, url: str | None, api_key: str | None) -> None:
        connection = resolve_connection(url, api_key)
        self.url = connection.url
        self.api_key = connection.api_key
        self.headers = {"X-Api-Key": self.api_key} if self.api_key else {}

    def _unreachable(self, error: Exception) -> ConnectionFailed:
        return ConnectionFailed(
            f"cannot reach the coordinator at {self.url} ({error.__class__.__name__}): is `aitbc serve` running? "
            "Set --url or AITBC_URL to point elsewhere."
        )


class Client(_Base):
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(url, api_key)
        self.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def run(self, call: Call[T]) -> T:
        try:
            response = self.http.request(
                call.method, call.path, json=call.json, params=call.params, headers=call.headers
            )
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        return call.parse(response)

    def submit(self, **options: Any) -> JobView:
        """Submit a job; options as `calls.submit` (type, model_name, input, params, gpu_type, …)."""
        return self.run(calls.submit(**options))

    def get(self, job_id: str) -> JobView:
        return self.run(calls.get(job_id))

    def list(self, **filters: Any) -> JobList:
        return self.run(calls.list_jobs(**filters))

    def iter_jobs(self, **filters: Any) -> Iterator[JobView]:
        """Every job matching the filters, page by page."""
        cursor = None
        while True:
            page = self.list(**filters, cursor=cursor)
            yield from page.jobs
            if not page.has_more:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> CancelResult:
        return self.run(calls.cancel(job_id))

    def upload_file(self, path: Path | str, name: str | None = None) -> FileView:
        path = Path(path)

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as handle:
                while chunk := handle.read(UPLOAD_CHUNK):
                    yield chunk

        try:
            response = self.http.post(
                "/v1/files",
                params={"name": name or path.name},
                content=chunks(),
                headers={
                    "Content-Length": str(path.stat().st_size),
                    "Content-Type": "application/octet-stream",
                },
            )
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        return model(FileView)(response)

    def events(self, job_id: str | None = None, since: int | None = None) -> Iterator[EventMessage]:
        """Job events as they happen (resuming after `since`), until the caller stops iterating."""
        try:
            with websockets.sync.client.connect(
                _ws_url(self.url, job_id, since), additional_headers=self.headers, open_timeout=10
            ) as socket:
                for message in socket:
                    yield _event(message)
        except OSError as error:
            raise self._unreachable(error) from error

    def create_key(self, name: str, role: str, plan: str | None = None) -> CreatedKeyView:
        return self.run(calls.create_key(name, role, plan))

    def list_keys(self, account: str | None = None) -> builtins.list[KeyView]:
        return self.run(calls.list_keys(account))

    def revoke_key(self, key_id: str) -> KeyView:
        return self.run(calls.revoke_key(key_id))

    def list_accounts(self) -> builtins.list[AccountView]:
        return self.run(calls.list_accounts())

    def set_plan(self, name: str, plan: str) -> AccountView:
        return self.run(calls.set_plan(name, plan))


def _event(message: str | bytes) -> EventMessage:
    data = json.loads(message)
    if "error" in data and "seq" not in data:
        from aitbc.sdk.errors import ApiError

        raise ApiError(str(data["error"]), int(data.get("code", 4400)) - 4000)
    return EventMessage.model_validate(data)


class AsyncClient(_Base):
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(url, api_key)
        self.http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def run(self, call: Call[T]) -> T:
        try:
            response = await self.http.request(
                call.method, call.path, json=call.json, params=call.params, headers=call.headers
            )
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        return call.parse(response)

    async def submit(self, **options: Any) -> JobView:
        return await self.run(calls.submit(**options))

    async def get(self, job_id: str) -> JobView:
        return await self.run(calls.get(job_id))

    async def list(self, **filters: Any) -> JobList:
        return await self.run(calls.list_jobs(**filters))

    async def iter_jobs(self, **filters: Any) -> AsyncIterator[JobView]:
        cursor = None
        while True:
            page = await self.list(**filters, cursor=cursor)
            for job in page.jobs:
                yield job
            if not page.has_more:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> CancelResult:
        return await self.run(calls.cancel(job_id))

    async def upload_file(self, path: Path | str, name: str | None = None) -> FileView:
        path = Path(path)

        async def chunks() -> AsyncIterator[bytes]:
            async with await anyio.open_file(path, "rb") as handle:
                while chunk := await handle.read(UPLOAD_CHUNK):
                    yield chunk

        try:
            response = await self.http.post(
                "/v1/files",
                params={"name": name or path.name},
                content=chunks(),
                headers={
                    "Content-Length": str(path.stat().st_size),
                    "Content-Type": "application/octet-stream",
                },
            )
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        return model(FileView)(response)

    async def events(self, job_id: str | None = None, since: int | None = None) -> AsyncIterator[EventMessage]:
        try:
            async with websockets.connect(
                _ws_url(self.url, job_id, since), additional_headers=self.headers, open_timeout=10
            ) as socket:
                async for message in socket:
                    yield _event(message)
        except OSError as error:
            raise self._unreachable(error) from error

    async def create_key(self, name: str, role: str, plan: str | None = None) -> CreatedKeyView:
        return await self.run(calls.create_key(name, role, plan))
