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
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import anyio
import httpx
import websockets
import websockets.sync.client

from aitbc.protocol.admin import AccountView, CreatedKeyView, KeyView
from aitbc.protocol.billing import BalanceView, LedgerEntryView, StatsView
from aitbc.protocol.jobs import CancelResult, EventMessage, FileView, JobList, JobView
from aitbc.protocol.results import (
    CoordinatorKeyView,
    CreatedShareView,
    LogsView,
    ReceiptView,
    ResultPackageView,
    ResultsDeleted,
    RevokedShares,
    ShareList,
    ShareView,
)
from aitbc.sdk import billing_calls, calls
from aitbc.sdk.calls import Call, model
from aitbc.sdk.config import resolve_connection
from aitbc.sdk.downloads import (
    DOWNLOAD_ATTEMPTS,
    DOWNLOAD_CHUNK,
    DownloadCorrupted,
    Downloaded,
    Progress,
    file_path,
    finish_download,
    part_of,
    range_headers,
    zip_path,
)
from aitbc.sdk.errors import ConnectionFailed, raise_for_status

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

    # -- results ------------------------------------------------------------------------------------

    def results(self, job_id: str) -> ResultPackageView:
        return self.run(calls.result_package(job_id))

    def receipt(self, job_id: str) -> ReceiptView:
        return self.run(calls.receipt(job_id))

    def coordinator_key(self) -> CoordinatorKeyView:
        return self.run(calls.coordinator_key())

    def delete_results(self, job_id: str) -> ResultsDeleted:
        return self.run(calls.delete_results(job_id))

    def logs(self, job_id: str, after: int = 0) -> LogsView:
        return self.run(calls.logs(job_id, after))

    def create_share(self, job_id: str, expires_in_seconds: int | None = None) -> CreatedShareView:
        return self.run(calls.create_share(job_id, expires_in_seconds))

    def list_shares(self, job_id: str) -> ShareList:
        return self.run(calls.list_shares(job_id))

    def revoke_share(self, job_id: str, share_id: str) -> ShareView:
        return self.run(calls.revoke_share(job_id, share_id))

    def revoke_shares(self, job_id: str) -> RevokedShares:
        return self.run(calls.revoke_shares(job_id))

    def iter_bytes(self, path: str) -> Iterator[bytes]:
        """The body of GET `path` as it arrives (a file of a package: `file_path(job_id, path)`)."""
        try:
            with self.http.stream("GET", path) as response:
                if not response.is_success:
                    response.read()
                    raise_for_status(response)
                yield from response.iter_bytes(DOWNLOAD_CHUNK)
        except httpx.TransportError as error:
            raise self._unreachable(error) from error

    def download(
        self,
        path: str,
        destination: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
        attempts: int = DOWNLOAD_ATTEMPTS,
    ) -> Downloaded:
        """Stream GET `path` into `destination` through a `.part` file, resuming it with Range (guarded by
        If-Range) after an interruption or from an earlier run; check the sha256 if one is expected."""
        part = part_of(destination)
        part.parent.mkdir(parents=True, exist_ok=True)
        etag: str | None = None
        resumed_from = part.stat().st_size if part.exists() else 0
        for attempt in range(attempts):
            offset = part.stat().st_size if part.exists() else 0
            try:
                with self.http.stream("GET", path, headers=range_headers(offset, etag)) as response:
                    if response.status_code == 416:
                        part.unlink(missing_ok=True)
                        continue
                    if not response.is_success:
                        response.read()
                        raise_for_status(response)
                    etag = response.headers.get("etag")
                    done = offset if response.status_code == 206 else 0
                    with part.open("ab" if response.status_code == 206 else "wb") as handle:
                        for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                            handle.write(chunk)
                            done += len(chunk)
                            if progress is not None:
                                progress(done)
                break
            except httpx.TransportError as error:
                if attempt == attempts - 1:
                    raise self._unreachable(error) from error
                time.sleep(min(0.2 * 2**attempt, 3.0))
        try:
            return finish_download(part, destination, expected_sha256, resumed_from)
        except DownloadCorrupted:
            if not resumed_from:
                raise
            # A stale partial file from an earlier run: fetch the whole thing once more.
            return self.download(path, destination, expected_sha256=expected_sha256, progress=progress)

    def download_file(
        self, job_id: str, path: str, destination: Path, expected_sha256: str | None, progress: Progress | None = None
    ) -> Downloaded:
        return self.download(file_path(job_id, path), destination, expected_sha256=expected_sha256, progress=progress)

    def download_zip(self, job_id: str, destination: Path, progress: Progress | None = None) -> Downloaded:
        return self.download(zip_path(job_id), destination, progress=progress)

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

    def balance(self) -> BalanceView:
        return self.run(billing_calls.balance())

    def iter_ledger(self, from_: str | None = None, to: str | None = None) -> Iterator[LedgerEntryView]:
        """The caller's ledger entries, oldest first, page by page."""
        after = 0
        while True:
            page = self.run(billing_calls.ledger(from_, to, 1000, after))
            yield from page.entries
            if not page.has_more or page.next_after is None:
                return
            after = page.next_after

    def grant_credits(self, account: str, amount: str, memo: str = "") -> BalanceView:
        return self.run(billing_calls.grant(account, amount, memo))

    def stats(self, days: int | None = None) -> StatsView:
        return self.run(billing_calls.stats(days))

    def timeline(self, job_id: str) -> builtins.list[EventMessage]:
        return self.run(billing_calls.timeline(job_id))

    def retry(self, job_id: str) -> JobView:
        return self.run(billing_calls.retry(job_id))

    def export(
        self,
        format: str = "json",
        status: builtins.list[str] | None = None,
        days: int | None = None,
        from_: str | None = None,
        to: str | None = None,
    ) -> Iterator[bytes]:
        """The matching jobs as JSON or CSV, streamed in chunks (constant memory)."""
        params = billing_calls.export_params(status, days, from_, to, format)
        try:
            with self.http.stream("GET", "/v1/jobs/export", params=params) as response:
                if not response.is_success:
                    response.read()
                    raise_for_status(response)
                yield from response.iter_bytes()
        except httpx.TransportError as error:
            raise self._unreachable(error) from error


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

    # -- results ------------------------------------------------------------------------------------

    async def results(self, job_id: str) -> ResultPackageView:
        return await self.run(calls.result_package(job_id))

    async def receipt(self, job_id: str) -> ReceiptView:
        return await self.run(calls.receipt(job_id))

    async def coordinator_key(self) -> CoordinatorKeyView:
        return await self.run(calls.coordinator_key())

    async def delete_results(self, job_id: str) -> ResultsDeleted:
        return await self.run(calls.delete_results(job_id))

    async def logs(self, job_id: str, after: int = 0) -> LogsView:
        return await self.run(calls.logs(job_id, after))

    async def create_share(self, job_id: str, expires_in_seconds: int | None = None) -> CreatedShareView:
        return await self.run(calls.create_share(job_id, expires_in_seconds))

    async def list_shares(self, job_id: str) -> ShareList:
        return await self.run(calls.list_shares(job_id))

    async def revoke_share(self, job_id: str, share_id: str) -> ShareView:
        return await self.run(calls.revoke_share(job_id, share_id))

    async def revoke_shares(self, job_id: str) -> RevokedShares:
        return await self.run(calls.revoke_shares(job_id))

    async def download(
        self,
        path: str,
        destination: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
        attempts: int = DOWNLOAD_ATTEMPTS,
    ) -> Downloaded:
        """As `Client.download`: streamed through a `.part` file, resumed with Range, sha256 checked."""
        part = part_of(destination)
        await anyio.Path(part.parent).mkdir(parents=True, exist_ok=True)
        etag: str | None = None
        resumed_from = (await anyio.Path(part).stat()).st_size if await anyio.Path(part).exists() else 0
        for attempt in range(attempts):
            offset = (await anyio.Path(part).stat()).st_size if await anyio.Path(part).exists() else 0
            try:
                async with self.http.stream("GET", path, headers=range_headers(offset, etag)) as response:
                    if response.status_code == 416:
                        await anyio.Path(part).unlink(missing_ok=True)
                        continue
                    if not response.is_success:
                        await response.aread()
                        raise_for_status(response)
                    etag = response.headers.get("etag")
                    done = offset if response.status_code == 206 else 0
                    async with await anyio.open_file(part, "ab" if response.status_code == 206 else "wb") as handle:
                        async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                            await handle.write(chunk)
                            done += len(chunk)
                            if progress is not None:
                                progress(done)
                break
            except httpx.TransportError as error:
                if attempt == attempts - 1:
                    raise self._unreachable(error) from error
                await anyio.sleep(min(0.2 * 2**attempt, 3.0))
        return await anyio.to_thread.run_sync(finish_download, part, destination, expected_sha256, resumed_from)
