"""Domain jobs and events as the wire models clients and miners see, field by field (no I/O): what a view
needs beyond the job itself is the job presenter's (`job_presenter.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aitbc.domain.events import JobEvent
from aitbc.domain.job import Job, JobSpec, JobStatus
from aitbc.domain.package import ResultsState
from aitbc.protocol.jobs import (
    EventMessage,
    HardwareRequirements,
    JobRequirements,
    JobView,
    SubmittedJobView,
    result_links,
)

AVAILABLE = ResultsState.AVAILABLE.value
COMPLETED = JobStatus.COMPLETED


def requirements_view(spec: JobSpec) -> JobRequirements:
    requirements = spec.requirements
    return JobRequirements(
        gpu_type=requirements.gpu_type,
        gpu_count=requirements.gpu_count,
        min_vram_gb=requirements.min_vram_gb,
        miner_id=requirements.miner_id,
    )


def hardware_view(spec: JobSpec) -> HardwareRequirements:
    """What a miner is sent: the hardware, not the pin (a miner claims only what it may take)."""
    requirements = spec.requirements
    return HardwareRequirements(
        gpu_type=requirements.gpu_type, gpu_count=requirements.gpu_count, min_vram_gb=requirements.min_vram_gb
    )


def job_view(job: Job, waiting_for: str | None = None, results_expire_at: datetime | None = None) -> JobView:
    """`results_expire_at` depends on the account's plan and `waiting_for` on the miners connected, neither of
    which the job carries: `JobPresenter.view` fills them in."""
    return JobView(**_view_fields(job, waiting_for, results_expire_at))


def submitted_view(
    job: Job, warnings: Sequence[str], waiting_for: str | None, results_expire_at: datetime | None
) -> SubmittedJobView:
    """A submit's answer: the job's view and the warnings it was accepted with."""
    return SubmittedJobView(**_view_fields(job, waiting_for, results_expire_at), warnings=list(warnings))


def _view_fields(job: Job, waiting_for: str | None, results_expire_at: datetime | None) -> dict[str, Any]:
    spec = job.spec
    return dict(
        job_id=job.id,
        status=job.status,
        progress=job.progress,
        progress_message=job.progress_message,
        miner_id=job.miner_id,
        created_at=job.created_at,
        started_at=job.started_at,
        estimated_completion=job.estimated_completion,
        completed_at=job.completed_at,
        updated_at=job.updated_at,
        type=spec.type,
        model=spec.model,
        priority=spec.priority,
        timeout_seconds=spec.timeout_seconds,
        requirements=requirements_view(spec),
        params=spec.params,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        error=job.error,
        failure_reason=job.failure_reason,
        exit_code=job.exit_code,
        results=job.results_state,
        results_expire_at=results_expire_at,
        result_links=result_links(job.id)
        if job.status is JobStatus.COMPLETED and job.results_state == AVAILABLE
        else None,
        waiting_for=waiting_for,
        retry_of=job.retry_of,
        template=spec.template,
        workflow=spec.workflow,
        name=spec.name,
        tags=list(spec.tags),
        estimated_cost=job.estimated_cost,
        estimated_time_seconds=job.estimated_time_seconds,
        max_cost=job.max_cost,
        cost=job.cost,
        billed_seconds=job.billed_seconds,
    )


def event_message(event: JobEvent) -> EventMessage:
    return EventMessage(
        seq=event.seq,
        job_id=event.job_id,
        kind=event.kind,
        status=JobStatus(event.status),
        progress=event.progress,
        at=event.at,
        data=event.data,
    )
