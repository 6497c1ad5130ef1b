"""`AsyncClient`: the same API as `Client` (`sdk/sync_client.py`), as coroutines; the requests, the download
decisions and the multi-request work are the same code (`calls`, `downloads.Transfer`, `steps`)."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, Unpack, cast

import anyio
import anyio.to_thread
import httpx
import websockets
import websockets.exceptions

from aitbc.domain.digests import Sha256
from aitbc.domain.errors import RateLimited
from aitbc.protocol.batches import BatchResult
from aitbc.protocol.jobs import (
    CancelResult,
    EventMessage,
    FileView,
    JobList,
    JobView,
    SubmittedJobView,
)
from aitbc.sdk import billing_calls, calls, http_log
from aitbc.sdk.async_methods import AsyncClientMethods
from aitbc.sdk.base import (
    DEFAULT_TIMEOUT,
    UPLOAD_CHUNK,
    ClientBase,
    event,
    upload_headers,
    ws_url,
)
from aitbc.sdk.calls import Call, JobFilters, SubmitOptions, model
from aitbc.sdk.downloads import (
    DOWNLOAD_ATTEMPTS,
    DOWNLOAD_CHUNK,
    RESULT_HEAD_BYTES,
    Downloaded,
    Progress,
    ResultHead,
    Transfer,
    file_path,
    head_range,
    result_head,
)
from aitbc.sdk.errors import ConnectionFailed, raise_for_status
from aitbc.sdk.rate_limits import RateLimitRetries, rate_limit_notice
from aitbc.sdk.resuming import Notices, Resumption, as_connection_failed
from aitbc.sdk.steps import Digest, Fetch, Step, Steps

T = TypeVar("T")


class AsyncClient(AsyncClientMethods, ClientBase):
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        notices: Notices | None = None,
        rate_limits: RateLimitRetries | None = None,
    ) -> None:
        """As `Client`: `notices` told why a call waits, `rate_limits` how long it waits out a 429."""
        super().__init__(url, api_key, profile, notices, rate_limits)
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers=self.headers,
            timeout=timeout,
            transport=transport,
            event_hooks=http_log.async_event_hooks(),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _run(self, call: Call[T]) -> T:
        waits = self._waits(call.method, call.headers)
        while True:
            try:
                response = await self.http.request(
                    call.method, call.path, json=call.json, params=call.params, headers=call.headers
                )
            except httpx.TransportError as error:
                raise self._unreachable(error) from error
            if (delay := waits.delay(response)) is None:
                return call.parse(response)
            await self._wait_out(delay)

    async def _wait_out(self, seconds: float) -> None:
        self._notify(rate_limit_notice(seconds))
        await anyio.sleep(seconds)

    @asynccontextmanager
    async def _get(self, path: str, **options: Any) -> AsyncIterator[httpx.Response]:
        """As `Client._get`: GET `path` streamed, a 429 waited out."""
        waits = self._waits("GET", {})
        while True:
            async with self.http.stream("GET", path, **options) as response:
                if (delay := waits.delay(response)) is None:
                    yield response
                    return
            await self._wait_out(delay)

    async def _steps(self, steps: Steps[T]) -> T:
        """As `Client._steps`; local work runs in a worker thread, off the event loop."""
        send: Callable[[Any], Step] = steps.send
        answer: Any = None
        while True:
            try:
                step = send(answer)
            except StopIteration as stop:
                return cast(T, stop.value)
            try:
                answer, send = await self._step(step), steps.send
            except Exception as error:
                answer, send = error, steps.throw

    async def _step(self, step: Step) -> Any:
        if isinstance(step, Call):
            return await self._run(step)
        if isinstance(step, Fetch):
            return await self.download(
                step.path, step.destination, expected_sha256=step.expected_sha256, progress=step.progress
            )
        if isinstance(step, Digest):
            digest = Sha256()
            async for chunk in self.iter_bytes(step.path):
                digest.update(chunk)
            return digest.size, digest.hexdigest()
        return await anyio.to_thread.run_sync(step.work)

    @asynccontextmanager
    async def _stream(self, path: str, **options: Any) -> AsyncIterator[httpx.Response]:
        try:
            async with self._get(path, **options) as response:
                if not response.is_success:
                    await response.aread()
                    raise_for_status(response)
                yield response
        except httpx.TransportError as error:
            raise self._unreachable(error) from error

    # -- jobs ---------------------------------------------------------------------------------------

    async def submit(self, *, wait: int | None = None, **options: Unpack[SubmitOptions]) -> SubmittedJobView:
        """Submit a job: `submit(type=…, model=…, input=…, …)`, the fields of the POST /v1/jobs body; the answer
        carries `warnings` (e.g. no connected miner can run it now: see `queue_timeout_seconds`). With
        `wait` (seconds, at most 60) the answer comes once the job ends, with its `result`, or when `wait` is up
        (then as it stands)."""
        return await self._run(calls.submit(wait=wait, **options))

    async def submit_many(self, jobs: Iterable[SubmitOptions]) -> BatchResult:
        """Submit many jobs in one request and one transaction: each job as `submit` takes it (with its own
        `idempotency_key`); a result per job, in order. If one is refused none is stored, and the error's
        `item` is its index."""
        return await self._run(calls.submit_many(jobs))

    async def get(self, job_id: str, wait: int | None = None) -> JobView:
        """The job's status object; with `wait` (seconds, at most 60), once it ends (with its `result`) or when
        `wait` is up."""
        return await self._run(calls.get(job_id, wait))

    async def list(self, cursor: str | None = None, **filters: Unpack[JobFilters]) -> JobList:
        """One page of the caller's jobs, newest first (`status`, `days`, `from_`, `to`, `tag`, `name`, `limit`)."""
        return await self._run(calls.list_jobs(cursor, **filters))

    async def iter_jobs(self, **filters: Unpack[JobFilters]) -> AsyncIterator[JobView]:
        """Every job matching the filters, page by page (`limit` a page)."""
        cursor = None
        while True:
            page = await self.list(cursor, **filters)
            for job in page.jobs:
                yield job
            if not page.has_more:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> CancelResult:
        return await self._run(calls.cancel(job_id))

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
                headers=upload_headers(path.stat().st_size),
            )
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        return model(FileView)(response)

    async def events(self, job_id: str | None = None, since: int | None = None) -> AsyncGenerator[EventMessage, None]:
        """As `Client.events`."""
        async with aclosing(self._event_stream(job_id, since, None)) as stream:
            async for message in stream:
                if message is not None:
                    yield message

    async def _event_stream(
        self, job_id: str | None, since: int | None, quiet_seconds: float | None
    ) -> AsyncGenerator[EventMessage | None, None]:
        """As `Client._event_stream`: `events`, with a None each time `quiet_seconds` pass without one."""
        url = ws_url(self.url, job_id, since)
        http_log.websocket_opening(url, self.headers)
        how = "closed"
        try:
            async with websockets.connect(url, additional_headers=self.headers, open_timeout=10) as socket:
                while True:
                    try:
                        message = await asyncio.wait_for(socket.recv(), quiet_seconds)
                    except TimeoutError:
                        yield None
                        continue
                    except websockets.exceptions.ConnectionClosedOK:
                        return
                    yield event(message)
        except (OSError, websockets.exceptions.WebSocketException) as error:  # refused, or dropped midway
            how = "lost"
            raise self._unreachable(error) from error
        finally:
            http_log.websocket_ended(url, how)

    async def resumable_events(
        self,
        since: int | None,
        job_id: str | None = None,
        on_drop: Callable[[ConnectionFailed | None, float], Awaitable[None]] | None = None,
        *,
        reconnect_seconds: float | None = None,
    ) -> AsyncIterator[EventMessage]:
        """As `Client.resumable_events`: resumed after a drop, given up after `reconnect_seconds` if set."""
        quiet = self.events_or_quiet(since, job_id, None, on_drop, reconnect_seconds=reconnect_seconds)
        async with aclosing(quiet) as stream:
            async for message in stream:
                if message is not None:
                    yield message

    async def events_or_quiet(
        self,
        since: int | None,
        job_id: str | None = None,
        quiet_seconds: float | None = None,
        on_drop: Callable[[ConnectionFailed | None, float], Awaitable[None]] | None = None,
        *,
        reconnect_seconds: float | None = None,
    ) -> AsyncGenerator[EventMessage | None, None]:
        """As `Client.events_or_quiet`: `resumable_events`, with a None each time `quiet_seconds` pass without
        an event."""
        resumption = Resumption(self.url, since, reconnect_seconds)
        while True:
            error: ConnectionFailed | RateLimited | None = None
            resumption.starting()
            try:
                async with aclosing(self._event_stream(job_id, resumption.since, quiet_seconds)) as stream:
                    async for message in stream:
                        if message is not None:
                            resumption.delivered(message)
                        yield message
            except (ConnectionFailed, RateLimited) as failure:
                error = failure
            pause = resumption.dropped(error)
            if on_drop is not None:
                await on_drop(as_connection_failed(error), pause)
            if (notice := resumption.notice()) is not None:
                self._notify(notice)
            await anyio.sleep(pause)

    async def export(
        self,
        format: str = "json",
        status: builtins.list[str] | None = None,
        days: int | None = None,
        from_: str | None = None,
        to: str | None = None,
        tag: str | None = None,
        name: str | None = None,
    ) -> AsyncIterator[bytes]:
        """The matching jobs as JSON or CSV (with their names and tags), streamed in chunks (constant memory)."""
        params = billing_calls.export_params(status, days, from_, to, format, tag, name)
        async with self._stream("/v1/jobs/export", params=params) as response:
            async for chunk in response.aiter_bytes():
                yield chunk

    # -- downloads ----------------------------------------------------------------------------------

    async def result_head(self, job_id: str, max_bytes: int = RESULT_HEAD_BYTES) -> ResultHead:
        """As `Client.result_head`: the start of result.txt, and its whole size."""
        async with self._stream(file_path(job_id, "result.txt"), headers=head_range(max_bytes)) as response:
            return result_head(response, await response.aread())

    async def iter_bytes(self, path: str) -> AsyncIterator[bytes]:
        async with self._stream(path) as response:
            async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                yield chunk

    async def download(
        self,
        path: str,
        destination: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
        attempts: int = DOWNLOAD_ATTEMPTS,
    ) -> Downloaded:
        """As `Client.download`: streamed through a `.part` file, resumed with Range, sha256 checked, a stale
        partial file fetched again whole."""
        transfer = await anyio.to_thread.run_sync(Transfer, path, destination, expected_sha256, progress, attempts)
        while True:
            for attempt in range(attempts):
                try:
                    async with self._get(path, headers=transfer.request_headers()) as response:
                        if not response.is_success:
                            await response.aread()
                        writing = transfer.answer(response)
                        if writing is None:
                            continue
                        async with await anyio.open_file(transfer.part, writing.mode) as handle:
                            async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                                await handle.write(chunk)
                                writing.wrote(len(chunk))
                    break
                except httpx.TransportError as error:
                    delay = transfer.backoff(attempt)
                    if delay is None:
                        raise self._unreachable(error) from error
                    await anyio.sleep(delay)
            if (done := await anyio.to_thread.run_sync(transfer.finish)) is not None:
                return done
