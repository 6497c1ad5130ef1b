"""Progress and log lines of one running job: written to the package's log files at once, and sent to the
coordinator in batches about once a second (not one call per line), so a chatty job cannot flood it.

Runtimes may call `line` and `progress` from any thread; the batches go out from the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Literal

from aitbc.domain.errors import AitbcError, Conflict, NotFound
from aitbc.miner.coordinator_client import CoordinatorClient
from aitbc.miner.package import PackageLayout
from aitbc.protocol.miners import JobDirective, LogLine

log = logging.getLogger(__name__)
Stream = Literal["stdout", "stderr"]
MAX_LINE_CHARACTERS = 16384
MAX_BATCH_LINES = 1000
MAX_BUFFERED_LINES = 20000


def sendable(text: str) -> str:
    """Job output as text the coordinator accepts (it refuses NUL and lone surrogates): each becomes U+FFFD,
    so a job that prints a NUL byte still has its logs delivered, not refused."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class JobReporter:
    def __init__(
        self,
        client: CoordinatorClient,
        job_id: str,
        lease_id: str,
        layout: PackageLayout,
        on_directive: Callable[[JobDirective], None],
        on_lease_lost: Callable[[], None],
        interval_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self._job_id = job_id
        self._lease_id = lease_id
        self._on_directive = on_directive
        self._on_lease_lost = on_lease_lost
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._pending: list[LogLine] = []
        self._dropped = 0
        self._progress: int | None = None
        self._message: str | None = None
        self._sent: tuple[int | None, str | None] = (None, None)
        self._started = time.monotonic()
        self._files: dict[Stream, IO[str]] = {
            "stdout": layout.stdout_log.open("a", encoding="utf-8"),
            "stderr": layout.stderr_log.open("a", encoding="utf-8"),
        }
        self._task: asyncio.Task[None] | None = None
        self._flushing: asyncio.Future[None] | None = None

    # -- from the runtime (any thread) ----------------------------------------------------------------

    def line(self, stream: Stream, text: str, live: bool = True) -> None:
        """A line of the job's output: into the package's log file, and (`live`) to the coordinator's live log.
        A command job's `AITBC_PROGRESS=` lines are not live: they arrive as progress instead."""
        text = text.rstrip("\r\n")
        with self._lock:
            handle = self._files[stream]
            if not handle.closed:
                handle.write(text + "\n")
                handle.flush()
            if not live:
                return
            if len(self._pending) >= MAX_BUFFERED_LINES:
                self._pending.pop(0)
                self._dropped += 1
            line = LogLine(stream=stream, line=sendable(text[:MAX_LINE_CHARACTERS]), at=datetime.now(UTC))
            self._pending.append(line)

    def progress(self, percent: float, message: str | None = None) -> None:
        with self._lock:
            self._progress = max(0, min(100, int(percent)))
            if message is not None:
                self._message = sendable(message[:2000])

    @property
    def last_progress(self) -> int | None:
        return self._progress

    # -- from the event loop --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"report {self._job_id}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            # Shielded: stopping the loop mid-batch must not lose the lines already taken off the queue.
            self._flushing = asyncio.ensure_future(self.flush())
            await asyncio.shield(self._flushing)

    async def flush(self) -> None:
        """Send what is waiting; keep it for the next try when the coordinator is unreachable."""
        with self._lock:
            lines, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
            progress = (self._progress, self._message)
        if dropped:
            gap = f"[aitbc] {dropped} log lines dropped while unreachable"
            lines.insert(0, LogLine(stream="stderr", line=gap, at=lines[0].at if lines else None))
        try:
            while lines:
                directive = await self._client.logs(self._job_id, self._lease_id, lines[:MAX_BATCH_LINES])
                lines = lines[MAX_BATCH_LINES:]
                self._on_directive(directive)
            if progress != self._sent and progress[0] is not None:
                directive = await self._client.progress(self._job_id, self._lease_id, self._progress_body(*progress))
                self._sent = progress
                self._on_directive(directive)
        except (Conflict, NotFound):
            self._on_lease_lost()
        except AitbcError as error:
            log.debug("progress of %s not sent (%s); trying again later", self._job_id, error.message)
            with self._lock:
                self._pending[:0] = lines[-MAX_BUFFERED_LINES:]

    def _progress_body(self, percent: int | None, message: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"progress": percent, "message": message}
        if percent is not None and 0 < percent < 100:
            elapsed = time.monotonic() - self._started
            remaining = elapsed * (100 - percent) / percent
            body["estimated_completion"] = (datetime.now(UTC) + timedelta(seconds=remaining)).isoformat()
        return body

    async def close(self) -> None:
        """Stop the batching, send the last batch (once), and close the log files."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._flushing is not None:
            await self._flushing  # the batch in flight when the loop stopped
        await self.flush()
        with self._lock:
            for handle in self._files.values():
                handle.close()
