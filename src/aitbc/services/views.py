"""Domain jobs and events as the wire models clients see."""

from __future__ import annotations

from aitbc.domain.events import JobEvent
from aitbc.domain.job import Job, JobStatus
from aitbc.protocol.jobs import EventMessage, JobRequirements, JobView


def job_view(job: Job, waiting_for: str | None = None) -> JobView:
    spec = job.spec
    return JobView(
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
        requirements=JobRequirements(
            gpu_type=spec.requirements.gpu_type,
            gpu_count=spec.requirements.gpu_count,
            min_vram_gb=spec.requirements.min_vram_gb,
        ),
        params=spec.params,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        error=job.error,
        failure_reason=job.failure_reason,
        exit_code=job.exit_code,
        results=job.results_state,
        waiting_for=waiting_for,
        retry_of=job.retry_of,
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
