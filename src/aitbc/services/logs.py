"""A job's log lines as the miner sent them while it ran (the job's `log` events), for `aitbc client logs`;
once the job has finished its package's logs/stdout.log and logs/stderr.log hold the full logs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aitbc.domain.accounts import Principal
from aitbc.protocol.results import LogLineView, LogsView
from aitbc.services.jobs import JobService
from aitbc.storage.interfaces import JobEventLog

PAGE_LINES = 5000


def _printed_at(item: dict[str, Any], arrived: datetime) -> datetime:
    """When the job printed the line, as its miner stamped it; else when the line reached the coordinator."""
    try:
        return datetime.fromisoformat(str(item["at"])) if item.get("at") else arrived
    except ValueError:
        return arrived


class LogService:
    def __init__(self, events: JobEventLog, job_service: JobService) -> None:
        self._events = events
        self._job_service = job_service

    async def logs(self, principal: Principal, job_id: str, after: int = 0, limit: int = PAGE_LINES) -> LogsView:
        """Log lines of the events after sequence number `after`, whole events up to about `limit` lines;
        `last_seq` resumes (here, while `more`, or on the WebSocket)."""
        job = await self._job_service.get(principal, job_id)
        lines: list[LogLineView] = []
        last_seq = after
        events = [e for e in await self._events.job_events(job.id, ["log"]) if e.seq > after]
        for event in events:
            if lines and len(lines) >= limit:
                return LogsView(job_id=job.id, status=job.status, lines=lines, last_seq=last_seq, more=True)
            lines.extend(
                LogLineView(
                    seq=event.seq,
                    at=_printed_at(item, event.at),
                    stream=str(item.get("stream", "stdout")),
                    line=str(item["line"]),
                )
                for item in event.data.get("lines", [])
                if isinstance(item, dict) and "line" in item
            )
            last_seq = event.seq
        return LogsView(job_id=job.id, status=job.status, lines=lines, last_seq=last_seq, more=False)
