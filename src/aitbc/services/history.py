"""A client's past jobs: the timeline of one, stats over them, streamed exports of them, and retries."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Literal

from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import InvalidInput
from aitbc.domain.job import JobStatus
from aitbc.domain.money import from_units
from aitbc.protocol.billing import StatsView
from aitbc.protocol.jobs import EventMessage, JobView, SubmitJobRequest
from aitbc.services.job_presenter import JobPresenter
from aitbc.services.jobs import JobService
from aitbc.services.views import event_message
from aitbc.storage.interfaces import JobEventLog, JobFilter, JobReadModel, StatsStore

EXPORT_PAGE = 500
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)
CSV_COLUMNS = (
    "job_id",
    "status",
    "type",
    "model",
    "priority",
    "progress",
    "miner_id",
    "attempt",
    "created_at",
    "started_at",
    "completed_at",
    "failure_reason",
    "error",
    "exit_code",
    "estimated_cost",
    "max_cost",
    "cost",
    "billed_seconds",
    "results",
    "retry_of",
    "name",
    "tags",
)


class HistoryService:
    def __init__(
        self,
        jobs: JobReadModel,
        events: JobEventLog,
        stats: StatsStore,
        job_service: JobService,
        presenter: JobPresenter,
        clock: Clock,
    ) -> None:
        self._jobs = jobs
        self._events = events
        self._stats = stats
        self._job_service = job_service
        self._presenter = presenter
        self._clock = clock

    async def timeline(self, principal: Principal, job_id: str) -> list[EventMessage]:
        """Every status change of the job, in order."""
        job = await self._job_service.get(principal, job_id)
        return [event_message(event) for event in await self._events.job_events(job.id, ["status"])]

    async def stats(self, principal: Principal, days: int | None) -> StatsView:
        if days is not None and days < 1:
            raise InvalidInput("'days' must be at least 1")
        since = self._clock.now() - timedelta(days=days) if days else None
        stats = await self._stats.job_stats(principal.account.id, since)
        finished = sum(stats.by_status.get(s.value, 0) for s in FINISHED)
        completed = stats.by_status.get(JobStatus.COMPLETED.value, 0)
        return StatsView(
            total_jobs=sum(stats.by_status.values()),
            by_status={s.value: stats.by_status.get(s.value, 0) for s in JobStatus},
            finished=finished,
            success_rate=completed / finished if finished else None,
            average_completion_seconds=stats.average_run_seconds,
            total_spent=from_units(stats.spent_units),
            days=days,
        )

    async def views(self, where: JobFilter) -> AsyncIterator[JobView]:
        """Every matching job, page by page: constant memory however many there are."""
        cursor = None
        while True:
            page = await self._jobs.list_jobs(where, EXPORT_PAGE, cursor, with_total=False)
            for view in await self._presenter.views(page.jobs):
                yield view
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def export(
        self,
        principal: Principal,
        format: Literal["json", "csv"],
        statuses: list[JobStatus],
        since: datetime | None,
        until: datetime | None,
        tag: str | None = None,
        name: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Every matching job as a JSON array or as CSV (a header row, one row per job; its tags in one cell,
        separated by spaces), streamed."""
        views = self.views(self._job_service.filter(principal, statuses, since, until, tag, name))
        return self.export_csv(views) if format == "csv" else self.export_json(views)

    async def export_json(self, views: AsyncIterator[JobView]) -> AsyncIterator[bytes]:
        yield b"["
        first = True
        async for view in views:
            yield (b"" if first else b",") + b"\n" + view.model_dump_json().encode()
            first = False
        yield b"\n]\n"

    async def export_csv(self, views: AsyncIterator[JobView]) -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        async for view in views:
            data = view.model_dump(mode="json")
            data["tags"] = " ".join(view.tags)
            writer.writerow(["" if data.get(c) is None else data[c] for c in CSV_COLUMNS])
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()

    async def retry(self, principal: Principal, job_id: str) -> JobView:
        """Submit a failed or canceled job's spec again, as a new job that points back at the old one."""
        old = await self._job_service.get(principal, job_id)
        if old.status not in (JobStatus.FAILED, JobStatus.CANCELED):
            raise InvalidInput(f"only failed or canceled jobs can be retried; {old.id} is {old.status.value}")
        spec = old.spec
        request = SubmitJobRequest.model_validate(
            {
                "type": spec.type,
                "model": spec.model,
                "input": spec.input,
                "input_file_id": spec.input_file_id,
                "params": spec.params,
                "requirements": {
                    "gpu_type": spec.requirements.gpu_type,
                    "gpu_count": spec.requirements.gpu_count,
                    "min_vram_gb": spec.requirements.min_vram_gb,
                    "miner_id": spec.requirements.miner_id,  # a pinned job's retry is pinned (its miner checked again)
                },
                "priority": spec.priority,
                "timeout_seconds": spec.timeout_seconds,
                "name": spec.name,
                "tags": list(spec.tags),
            }
        )
        return await self._presenter.view((await self._job_service.submit(principal, request, retry_of=old.id)).job)
