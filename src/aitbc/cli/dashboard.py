"""`aitbc monitor dashboard`'s state, kept current by the WebSocket events of your jobs.

A snapshot first: the job metrics (whose `event_seq` is where the events resume, so nothing after the reads
is missed), your latest jobs, the live miners. Then each event updates the view at once (a job's status,
progress and message; a new job becomes a row), and a status change marks the counts stale: they and the
full rows of new jobs are read again, one request each, at most every `REFRESH_SECONDS` however many jobs
move — never a request per job. The miners' room is read every `MINERS_SECONDS`. A dropped connection is
shown and reconnected by the SDK (`AsyncClient.resumable_events`), resuming after the last event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

import anyio

from aitbc.domain.clock import isoformat_z
from aitbc.domain.errors import RateLimited
from aitbc.domain.job import JobStatus
from aitbc.protocol.jobs import EventMessage, JobView
from aitbc.protocol.monitor import JobMetricsView, MinerMetricsView
from aitbc.sdk.client import AsyncClient
from aitbc.sdk.errors import ConnectionFailed

REFRESH_SECONDS = 5.0
MINERS_SECONDS = 30.0
UNKNOWN = "…"  # a field of a job known only from its event, until the next read fills it in


@dataclass(frozen=True)
class JobRow:
    job_id: str
    status: JobStatus
    progress: int
    type: str = UNKNOWN
    model: str | None = None
    created_at: datetime | None = None
    message: str = ""
    seq: int = 0  # the last event applied to the row (0: as the list read it)

    def to_json(self) -> dict[str, object]:
        created = isoformat_z(self.created_at) if self.created_at is not None else None
        return {
            "job_id": self.job_id,
            "status": self.status.value,
            "progress": self.progress,
            "type": self.type,
            "model": self.model,
            "created_at": created,
            "message": self.message,
        }

    @classmethod
    def of(cls, job: JobView) -> JobRow:
        message = job.progress_message or (job.error or "") or (job.waiting_for or "")
        return cls(job.job_id, job.status, job.progress, job.type, job.model, job.created_at, message)


@dataclass
class Dashboard:
    api: AsyncClient
    shown: int
    rows: list[JobRow] = field(default_factory=list)
    metrics: JobMetricsView | None = None
    miners: MinerMetricsView | None = None
    last_seq: int = 0
    stale: bool = False
    link: str = "connecting"
    on_change: Callable[[], None] = lambda: None

    async def snapshot(self) -> None:
        self.metrics = await self.api.job_metrics()
        self.last_seq = max(self.last_seq, self.metrics.event_seq)
        self.link = f"snapshot at event {self.last_seq}"
        await self._read_rows()
        self.miners = await self.api.miner_metrics()

    async def _read_rows(self) -> None:
        """The latest jobs as the list has them; a row an event changed while the list was read keeps what the
        event said (it is newer)."""
        asked_at = self.last_seq
        listed = [JobRow.of(job) for job in (await self.api.list(limit=self.shown)).jobs]
        moved = {row.job_id: row for row in self.rows if row.seq > asked_at}
        merged = [
            replace(row, status=newer.status, progress=newer.progress, message=newer.message, seq=newer.seq)
            if (newer := moved.pop(row.job_id, None))
            else row
            for row in listed
        ]
        newer_jobs = [row for row in moved.values() if row.type == UNKNOWN]  # submitted during the read
        self.rows = [*newer_jobs, *merged][: self.shown]

    def apply(self, event: EventMessage) -> None:
        self.last_seq = max(self.last_seq, event.seq)
        self.link = f"live (event {event.seq})"
        message = str(event.data.get("message") or "") if event.kind == "progress" else None
        for index, row in enumerate(self.rows):
            if row.job_id == event.job_id:
                moved = replace(row, status=event.status, progress=event.progress, seq=event.seq)
                self.rows[index] = replace(moved, message=message) if message is not None else moved
                break
        else:
            if event.kind == "status" and "move" not in event.data:  # a submission: a new job, on top
                new = JobRow(event.job_id, event.status, event.progress, created_at=event.at, seq=event.seq)
                self.rows = [new, *self.rows][: self.shown]
            # else: a job further down the history than the view shows; its move still changes the counts
        if event.kind == "status":
            self.stale = True

    async def dropped(self, error: ConnectionFailed | None, pause: float) -> None:
        reason = error.message if error is not None else "the coordinator ended the stream"
        self.link = f"reconnecting in {pause:g} s after event {self.last_seq}: {reason}"
        self.stale = True
        self.on_change()

    async def _follow(self) -> None:
        async for event in self.api.resumable_events(self.last_seq, on_drop=self.dropped):
            self.apply(event)
            self.on_change()

    async def _refresh(self) -> None:
        miners_due = MINERS_SECONDS
        while True:
            await anyio.sleep(REFRESH_SECONDS)
            miners_due -= REFRESH_SECONDS
            try:
                if self.stale:
                    self.stale = False
                    self.metrics = await self.api.job_metrics()
                    await self._read_rows()
                if miners_due <= 0:
                    self.miners, miners_due = await self.api.miner_metrics(), MINERS_SECONDS
            except ConnectionFailed:
                self.stale = True  # the events' side shows the drop and reconnects
            except RateLimited as error:
                self.stale = True
                await anyio.sleep(error.retry_after)
            self.on_change()

    async def run(self) -> None:
        """Follow the events and refresh the counts until cancelled (Ctrl-C) or an error that is an answer (a
        revoked key) ends it."""
        self.link = f"live (from event {self.last_seq})"
        tasks = {asyncio.create_task(self._follow()), asyncio.create_task(self._refresh())}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
