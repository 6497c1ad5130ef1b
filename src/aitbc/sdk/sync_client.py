"""`Client`: the whole client API of a coordinator, blocking.

from aitbc import Client
with Client() as client:                       # AITBC_URL / AITBC_API_KEY / profile
    job = client.submit(type="command", input="echo hi")
    for event in client.events(job_id=job.job_id):
        ...
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar, Unpack, cast

import httpx
import websockets.exceptions
import websockets.sync.client

from aitbc.domain.digests import sha256_chunks
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
from aitbc.sdk.sync_methods import ClientMethods

T = TypeVar("T")


class Client(ClientMethods, ClientBase):
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        notices: Notices | None = None,
        rate_limits: RateLimitRetries | None = None,
    ) -> None:
        """`notices`: told in words why a call waits (a reconnect, a rate limit), e.g. to print it.
        `rate_limits`: how long a call that is safe to repeat waits out a 429 (default: 5 retries, 60 s)."""
        super().__init__(url, api_key, profile, notices, rate_limits)
        self.http = httpx.Client(
            base_url=self.url,
            headers=self.headers,
            timeout=timeout,
            transport=transport,
            event_hooks=http_log.event_hooks(),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _run(self, call: Call[T]) -> T:
        waits = self._waits(call.method, call.headers)
        while True:
            try:
                response = self.http.request(
                    call.method, call.path, json=call.json, params=call.params, headers=call.headers
                )
            except httpx.TransportError as error:
                raise self._unreachable(error) from error
            if (delay := waits.delay(response)) is None:
                return call.parse(response)
            self._wait_out(delay)

    def _wait_out(self, seconds: float) -> None:
        """The rate limit's wait, told to the caller first."""
        self._notify(rate_limit_notice(seconds))
        time.sleep(seconds)

    @contextmanager
    def _get(self, path: str, **options: Any) -> Iterator[httpx.Response]:
        """GET `path` streamed, waiting out a 429 as `_run` does; the answer as it is, error or not."""
        waits = self._waits("GET", {})
        while True:
            with self.http.stream("GET", path, **options) as response:
                if (delay := waits.delay(response)) is None:
                    yield response
                    return
            self._wait_out(delay)

    def _steps(self, steps: Steps[T]) -> T:
        """Run work written as steps (`sdk/steps.py`): each step's answer, or its error, goes back in."""
        send: Callable[[Any], Step] = steps.send
        answer: Any = None
        while True:
            try:
                step = send(answer)
            except StopIteration as stop:
                return cast(T, stop.value)
            try:
                answer, send = self._step(step), steps.send
            except Exception as error:
                answer, send = error, steps.throw

    def _step(self, step: Step) -> Any:
        if isinstance(step, Call):
            return self._run(step)
        if isinstance(step, Fetch):
            return self.download(
                step.path, step.destination, expected_sha256=step.expected_sha256, progress=step.progress
            )
        if isinstance(step, Digest):
            return sha256_chunks(self.iter_bytes(step.path))
        return step.work()

    @contextmanager
    def _stream(self, path: str, **options: Any) -> Iterator[httpx.Response]:
        """GET `path` streamed; an error answer raises its error, a lost connection `ConnectionFailed`."""
        try:
            with self._get(path, **options) as response:
                if not response.is_success:
                    response.read()
                    raise_for_status(response)
                yield response
        except httpx.TransportError as error:
            raise self._unreachable(error) from error

    # -- jobs ---------------------------------------------------------------------------------------

    def submit(self, *, wait: int | None = None, **options: Unpack[SubmitOptions]) -> SubmittedJobView:
        """Submit a job: `submit(type=…, model=…, input=…, …)`, the fields of the POST /v1/jobs body; the answer
        carries `warnings` (e.g. no connected miner can run it now: see `queue_timeout_seconds`). With
        `wait` (seconds, at most 60) the answer comes once the job ends, with its `result`, or when `wait` is up
        (then as it stands)."""
        return self._run(calls.submit(wait=wait, **options))

    def submit_many(self, jobs: Iterable[SubmitOptions]) -> BatchResult:
        """Submit many jobs in one request and one transaction: each job as `submit` takes it (with its own
        `idempotency_key`); a result per job, in order. If one is refused none is stored, and the error's
        `item` is its index."""
        return self._run(calls.submit_many(jobs))

    def get(self, job_id: str, wait: int | None = None) -> JobView:
        """The job's status object; with `wait` (seconds, at most 60), once it ends (with its `result`) or when
        `wait` is up."""
        return self._run(calls.get(job_id, wait))

    def list(self, cursor: str | None = None, **filters: Unpack[JobFilters]) -> JobList:
        """One page of the caller's jobs, newest first (`status`, `days`, `from_`, `to`, `tag`, `name`, `limit`)."""
        return self._run(calls.list_jobs(cursor, **filters))

    def iter_jobs(self, **filters: Unpack[JobFilters]) -> Iterator[JobView]:
        """Every job matching the filters, page by page (`limit` a page)."""
        cursor = None
        while True:
            page = self.list(cursor, **filters)
            yield from page.jobs
            if not page.has_more:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> CancelResult:
        return self._run(calls.cancel(job_id))

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
                headers=upload_headers(path.stat().st_size),
            )
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        return model(FileView)(response)

    def events(self, job_id: str | None = None, since: int | None = None) -> Generator[EventMessage, None, None]:
        """Job events as they happen (resuming after `since`), until the caller stops iterating or the
        coordinator closes the stream; a connection refused or lost raises `ConnectionFailed`."""
        for message in self._event_stream(job_id, since, None):
            if message is not None:
                yield message

    def _event_stream(
        self, job_id: str | None, since: int | None, quiet_seconds: float | None
    ) -> Generator[EventMessage | None, None, None]:
        """`events`, with a None each time `quiet_seconds` pass without one (never, without `quiet_seconds`)."""
        url = ws_url(self.url, job_id, since)
        http_log.websocket_opening(url, self.headers)
        how = "closed"
        try:
            with websockets.sync.client.connect(url, additional_headers=self.headers, open_timeout=10) as socket:
                while True:
                    try:
                        yield event(socket.recv(timeout=quiet_seconds))
                    except TimeoutError:
                        yield None
                    except websockets.exceptions.ConnectionClosedOK:
                        return
        except (OSError, websockets.exceptions.WebSocketException) as error:  # refused, or dropped midway
            how = "lost"
            raise self._unreachable(error) from error
        finally:
            http_log.websocket_ended(url, how)

    def resumable_events(
        self,
        since: int | None,
        job_id: str | None = None,
        on_drop: Callable[[ConnectionFailed | None, float], None] | None = None,
        *,
        reconnect_seconds: float | None = None,
    ) -> Iterator[EventMessage]:
        """`events` that outlive a dropped connection or a coordinator restart: after a pause (growing up to
        `RECONNECT_DELAYS[-1]`) it reconnects and resumes after the last event seen, so none is missed or
        repeated. `on_drop(error, pause)` hears of each drop (error None: the coordinator ended the stream), as
        do the client's `notices` when an outage begins. With `reconnect_seconds`, an outage that lasts longer
        raises `ConnectionLost` (None: it keeps trying). Errors that are answers (a revoked key) still raise."""
        for message in self.events_or_quiet(since, job_id, None, on_drop, reconnect_seconds=reconnect_seconds):
            if message is not None:
                yield message

    def events_or_quiet(
        self,
        since: int | None,
        job_id: str | None = None,
        quiet_seconds: float | None = None,
        on_drop: Callable[[ConnectionFailed | None, float], None] | None = None,
        *,
        reconnect_seconds: float | None = None,
    ) -> Iterator[EventMessage | None]:
        """`resumable_events`, with a None each time `quiet_seconds` pass without an event: the moment for a
        caller to refresh what events do not carry (what a pending job waits for, `waiting_for`)."""
        resumption = Resumption(self.url, since, reconnect_seconds)
        while True:
            error: ConnectionFailed | RateLimited | None = None
            resumption.starting()
            try:
                with closing(self._event_stream(job_id, resumption.since, quiet_seconds)) as stream:
                    for message in stream:
                        if message is not None:
                            resumption.delivered(message)
                        yield message
            except (ConnectionFailed, RateLimited) as failure:
                error = failure
            pause = resumption.dropped(error)
            if on_drop is not None:
                on_drop(as_connection_failed(error), pause)
            if (notice := resumption.notice()) is not None:
                self._notify(notice)
            time.sleep(pause)

    def export(
        self,
        format: str = "json",
        status: builtins.list[str] | None = None,
        days: int | None = None,
        from_: str | None = None,
        to: str | None = None,
        tag: str | None = None,
        name: str | None = None,
    ) -> Iterator[bytes]:
        """The matching jobs as JSON or CSV (with their names and tags), streamed in chunks (constant memory)."""
        params = billing_calls.export_params(status, days, from_, to, format, tag, name)
        with self._stream("/v1/jobs/export", params=params) as response:
            yield from response.iter_bytes()

    # -- downloads ----------------------------------------------------------------------------------

    def result_head(self, job_id: str, max_bytes: int = RESULT_HEAD_BYTES) -> ResultHead:
        """The first `max_bytes` of a completed job's result.txt (one request, a Range), and its whole size."""
        with self._stream(file_path(job_id, "result.txt"), headers=head_range(max_bytes)) as response:
            return result_head(response, response.read())

    def iter_bytes(self, path: str) -> Iterator[bytes]:
        """The body of GET `path` as it arrives (a file of a package: `file_path(job_id, path)`)."""
        with self._stream(path) as response:
            yield from response.iter_bytes(DOWNLOAD_CHUNK)

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
        transfer = Transfer(path, destination, expected_sha256, progress, attempts)
        while True:
            for attempt in range(attempts):
                try:
                    with self._get(path, headers=transfer.request_headers()) as response:
                        if not response.is_success:
                            response.read()
                        writing = transfer.answer(response)
                        if writing is None:
                            continue
                        with transfer.part.open(writing.mode) as handle:
                            for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                                handle.write(chunk)
                                writing.wrote(len(chunk))
                    break
                except httpx.TransportError as error:
                    delay = transfer.backoff(attempt)
                    if delay is None:
                        raise self._unreachable(error) from error
                    time.sleep(delay)
            if (done := transfer.finish()) is not None:
                return done
