"""The miner's side of the miner API, over httpx: typed calls, streamed files, retries while unreachable.

A miner outlives coordinator restarts and network blips, so calls that must eventually land (register,
uploads, complete, fail) retry with backoff for as long as the coordinator is unreachable or answers 5xx.
A 4xx answer is never retried: it is raised as the matching `AitbcError` (409 `Conflict` = stale lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import httpx
from pydantic import BaseModel

from aitbc.domain.errors import InvalidInput
from aitbc.miner.backoff import Backoff
from aitbc.protocol.miners import (
    COMPLETE_BATCH_MAX,
    Assignment,
    BatchCompleteResponse,
    ClaimResponse,
    FailRequest,
    FinishRequest,
    HeartbeatResponse,
    JobDirective,
    LeaseState,
    LogLine,
    RegisterRequest,
    RegisterResponse,
    UploadedFile,
)
from aitbc.sdk.errors import ConnectionFailed, error_for_status, raise_for_status

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
CHUNK_SIZE = 1024 * 1024
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
LONG_POLL_SLACK_SECONDS = 30.0


class Unreachable(ConnectionFailed):
    """The coordinator could not be reached (or answered 5xx) and the call was not retried further."""


class CoordinatorClient:
    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"X-Api-Key": api_key},
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )
        self.miner_id = ""
        self._closed = asyncio.Event()
        self._completions: list[tuple[str, FinishRequest, asyncio.Future[JobDirective]]] = []
        self._completer: asyncio.Task[None] | None = None

    @property
    def completions_waiting(self) -> int:
        """Completions ready and not yet on their way (they go with the next call)."""
        return len(self._completions)

    async def close(self) -> None:
        self._closed.set()
        if self._completer is not None and not self._completer.done():
            self._completer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._completer
        for _, _, waiting in self._completions:
            _settle(waiting, Unreachable("the miner stopped before this result was sent"))
        self._completions.clear()
        await self._http.aclose()

    # -- plumbing -----------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        body_file: Path | None = None,
    ) -> httpx.Response:
        """One request; with `retry`, again and again (with backoff) while the coordinator is unreachable."""
        backoff = Backoff()
        while True:
            try:
                content = _file_chunks(body_file) if body_file is not None else None
                response = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers=headers,
                    content=content,
                    timeout=httpx.Timeout(timeout) if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as error:
                problem = f"{error.__class__.__name__}: {error}"
            else:
                if response.status_code not in RETRIED_STATUSES:
                    raise_for_status(response)
                    return response
                problem = f"HTTP {response.status_code}"
            if not retry or self._closed.is_set():
                raise Unreachable(f"cannot reach the coordinator at {self.url} ({problem})")
            delay = backoff.next_delay()
            log.warning("%s %s failed (%s); retrying in %.1f s", method, path, problem, delay)
            await asyncio.sleep(delay)

    async def _model(self, model: type[M], method: str, path: str, *, retry: bool, **options: Any) -> M:
        response = await self._send(method, path, retry=retry, **options)
        return model.model_validate(response.json())

    def _job_path(self, job_id: str, verb: str) -> str:
        return f"/v1/miners/{self.miner_id}/jobs/{job_id}/{verb}"

    # -- the miner ----------------------------------------------------------------------------------

    async def register(self, request: RegisterRequest) -> RegisterResponse:
        """`schemas` is sent only when there are some: a coordinator older than them refuses the field."""
        body = request.model_dump(mode="json", exclude={"schemas"} if request.schemas is None else None)
        answer = await self._model(RegisterResponse, "POST", "/v1/miners/register", retry=True, json=body)
        self.miner_id = answer.miner_id
        return answer

    async def claim(self, max_jobs: int, wait_seconds: float, start: bool = False) -> list[Assignment]:
        """Claim up to `max_jobs`; with `start`, the coordinator starts them in the same call (they come back
        `running`, and need no `start` call each)."""
        body: dict[str, Any] = {"max_jobs": max_jobs, "wait_seconds": wait_seconds}
        if start:
            body["start"] = True
        answer = await self._model(
            ClaimResponse,
            "POST",
            f"/v1/miners/{self.miner_id}/claim",
            retry=False,
            json=body,
            timeout=wait_seconds + LONG_POLL_SLACK_SECONDS,
        )
        return answer.jobs

    async def heartbeat(self, lease_ids: list[str], wait_seconds: float) -> list[LeaseState]:
        answer = await self._model(
            HeartbeatResponse,
            "POST",
            f"/v1/miners/{self.miner_id}/heartbeat",
            retry=False,
            json={"lease_ids": lease_ids, "wait_seconds": wait_seconds},
            timeout=wait_seconds + LONG_POLL_SLACK_SECONDS,
        )
        return answer.leases

    # -- one job ------------------------------------------------------------------------------------

    async def start(self, job_id: str, lease_id: str) -> JobDirective:
        return await self._model(
            JobDirective, "POST", self._job_path(job_id, "start"), retry=True, json={"lease_id": lease_id}
        )

    async def progress(self, job_id: str, lease_id: str, body: dict[str, Any]) -> JobDirective:
        return await self._model(
            JobDirective, "POST", self._job_path(job_id, "progress"), retry=False, json={"lease_id": lease_id, **body}
        )

    async def logs(self, job_id: str, lease_id: str, lines: list[LogLine]) -> JobDirective:
        body = {"lease_id": lease_id, "lines": [line.model_dump(mode="json", exclude_none=True) for line in lines]}
        return await self._model(JobDirective, "POST", self._job_path(job_id, "logs"), retry=False, json=body)

    async def download_input(self, job_id: str, lease_id: str, target: Path, expected_sha256: str) -> None:
        """Stream the job's input file to `target`, checking its sha256; retried while unreachable."""
        backoff = Backoff()
        while True:
            try:
                await self._download(job_id, lease_id, target, expected_sha256)
                return
            except httpx.TransportError as error:
                if self._closed.is_set():
                    raise Unreachable(f"cannot download the input of {job_id}: {error}") from error
                delay = backoff.next_delay()
                log.warning("input download for %s failed (%s); retrying in %.1f s", job_id, error, delay)
                await asyncio.sleep(delay)

    async def _download(self, job_id: str, lease_id: str, target: Path, expected_sha256: str) -> None:
        digest = hashlib.sha256()
        async with self._http.stream("GET", self._job_path(job_id, "input"), params={"lease_id": lease_id}) as answer:
            if not answer.is_success:
                await answer.aread()
                raise_for_status(answer)
            async with await anyio.open_file(target, "wb") as handle:
                async for chunk in answer.aiter_bytes(CHUNK_SIZE):
                    digest.update(chunk)
                    await handle.write(chunk)
        if digest.hexdigest() != expected_sha256:
            raise InvalidInput(f"the input file of {job_id} arrived damaged (sha256 {digest.hexdigest()})")

    async def upload(self, job_id: str, lease_id: str, package_path: str, source: Path) -> UploadedFile:
        """Stream one file of the result package (never read whole into memory); retried while unreachable."""
        size = (await anyio.Path(source).stat()).st_size
        return await self._model(
            UploadedFile,
            "PUT",
            self._job_path(job_id, "files/" + quote(package_path)),
            retry=True,
            headers={
                "X-Lease-Id": lease_id,
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size),
            },
            body_file=source,
            timeout=600.0,
        )

    async def complete(self, job_id: str, request: FinishRequest) -> JobDirective:
        """Complete one job. A job whose completion is ready while another's is on its way waits for that call
        and then goes with every other one ready by then, in one batch call: a lone job is never held back to
        wait for company, and a miner with several slots finishing jobs together makes one call, not one each."""
        waiting: asyncio.Future[JobDirective] = asyncio.get_running_loop().create_future()
        self._completions.append((job_id, request, waiting))
        if self._completer is None or self._completer.done():
            self._completer = asyncio.create_task(self._send_completions(), name="completions")
        return await asyncio.shield(waiting)

    async def _send_completions(self) -> None:
        await asyncio.sleep(0)  # completions readied in this same turn of the event loop go together
        while self._completions:
            batch, self._completions = self._completions[:COMPLETE_BATCH_MAX], self._completions[COMPLETE_BATCH_MAX:]
            try:
                if len(batch) == 1:
                    ((job_id, request, waiting),) = batch
                    body = request.model_dump(mode="json")
                    path = self._job_path(job_id, "complete")
                    answer = await self._model(JobDirective, "POST", path, retry=True, json=body)
                    _settle(waiting, answer)
                    continue
                items = [{"job_id": job_id, **request.model_dump(mode="json")} for job_id, request, _ in batch]
                path = f"/v1/miners/{self.miner_id}/jobs/complete"
                response = await self._model(BatchCompleteResponse, "POST", path, retry=True, json={"jobs": items})
                for (_, _, waiting), result in zip(batch, response.results, strict=True):
                    if result.directive is not None:
                        _settle(waiting, result.directive)
                    elif result.error is not None:
                        _settle(waiting, error_for_status(result.error.status, result.error.message))
            except asyncio.CancelledError:
                for _, _, waiting in batch:
                    _settle(waiting, Unreachable("the miner stopped before this result was sent"))
                raise
            except Exception as error:  # every job of this call hears why it failed
                for _, _, waiting in batch:
                    _settle(waiting, error)

    async def fail(self, job_id: str, request: FailRequest) -> JobDirective:
        body = request.model_dump(mode="json")
        return await self._model(JobDirective, "POST", self._job_path(job_id, "fail"), retry=True, json=body)


def _settle(waiting: asyncio.Future[JobDirective], outcome: JobDirective | BaseException) -> None:
    if waiting.done():
        return
    if isinstance(outcome, BaseException):
        waiting.set_exception(outcome)
    else:
        waiting.set_result(outcome)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as handle:
        while chunk := await handle.read(CHUNK_SIZE):
            yield chunk
