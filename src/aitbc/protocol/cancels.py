"""Cancelling many jobs at once: the filter (a job list's filter) and what became of each job it matched."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aitbc.domain.job import JobStatus
from aitbc.protocol.jobs import MOMENT_PATTERN, JobName, Strict, Tag

MAX_CANCEL_JOBS = 1000
# A job a cancel can move: pending (canceled at once), assigned or running (its miner stops it).
CancelableStatus = Literal["pending", "assigned", "running"]
_MOMENT = "a day (2026-01-31) or an ISO 8601 time (2026-01-31T10:00:00Z)"


class CancelJobsRequest(Strict):
    """Which of your unfinished jobs to cancel: those that every given field matches (as `GET /v1/jobs`
    filters), newest first, at most `limit` a call. With no filter at all, `all` must say you mean every one."""

    model_config = ConfigDict(populate_by_name=True)

    status: list[CancelableStatus] = Field(
        default_factory=list, max_length=3, description="only jobs in these statuses (default: all three)"
    )
    tag: Tag | None = Field(default=None, description="only jobs with this tag")
    name: JobName | None = Field(default=None, description="only jobs of exactly this name")
    from_: str | None = Field(
        default=None, alias="from", max_length=40, pattern=MOMENT_PATTERN, description=f"created from {_MOMENT}"
    )
    to: str | None = Field(
        default=None,
        max_length=40,
        pattern=MOMENT_PATTERN,
        description=f"created up to {_MOMENT}; a day includes all of it",
    )
    all: bool = Field(default=False, description="cancel every unfinished job (required when no filter is given)")
    limit: int = Field(default=MAX_CANCEL_JOBS, ge=1, le=MAX_CANCEL_JOBS, description="at most this many jobs")

    @property
    def filtered(self) -> bool:
        return bool(self.status or self.tag or self.name or self.from_ or self.to)


class CanceledJob(BaseModel):
    job_id: str
    outcome: Literal["canceling", "canceled", "failed"]
    status: JobStatus
    message: str


class CancelJobsResult(BaseModel):
    """What the cancel did to each matching job: `canceled` at once (it was pending), `canceling` (its miner
    is stopping it), or `failed` (it ended meanwhile; nothing changed)."""

    canceled: int
    canceling: int
    failed: int
    more: bool = Field(description="more jobs match than this call took: call again for the next ones")
    jobs: list[CanceledJob]
