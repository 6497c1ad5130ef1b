"""Client routes: submit, read, list, history, cancel, input files."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from aitbc.api.dependencies import ClientDep, CoordinatorDep
from aitbc.domain.errors import InvalidInput
from aitbc.domain.job import JobStatus
from aitbc.protocol.jobs import CancelResult, FileView, JobList, JobView, SubmitJobRequest

router = APIRouter(prefix="/v1", tags=["jobs"])


def parse_moment(value: str | None, name: str, end_of_day: bool = False) -> datetime | None:
    """`2026-01-31` is a whole day (as `to`, up to the end of it); a full ISO 8601 time is taken as is."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError as error:
        raise InvalidInput(f"'{name}' must be a date (2026-01-31) or an ISO 8601 time, not {value!r}") from error


# Words the guides use for groups of statuses.
STATUS_ALIASES = {
    "submitted": [JobStatus.PENDING],
    "active": [JobStatus.PENDING, JobStatus.ASSIGNED, JobStatus.RUNNING, JobStatus.CANCELING],
    "finished": [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED],
}


def parse_statuses(values: list[str]) -> list[JobStatus]:
    statuses: list[JobStatus] = []
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            if part.strip() in STATUS_ALIASES:
                statuses.extend(STATUS_ALIASES[part.strip()])
                continue
            try:
                statuses.append(JobStatus(part.strip()))
            except ValueError as error:
                choices = ", ".join([s.value for s in JobStatus] + list(STATUS_ALIASES))
                raise InvalidInput(f"unknown status {part!r}; choose from {choices}") from error
    return statuses


@router.post("/jobs", status_code=201, response_model=JobView)
async def submit_job(
    body: SubmitJobRequest,
    principal: ClientDep,
    coordinator: CoordinatorDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JobView:
    submitted = await coordinator.jobs.submit(principal, body, idempotency_key)
    if not submitted.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return await coordinator.results.job_view(submitted.job, await coordinator.jobs.waiting_for(submitted.job))


async def _list(
    principal: ClientDep,
    coordinator: CoordinatorDep,
    status: list[str],
    from_: str | None,
    to: str | None,
    days: int | None,
    limit: int,
    cursor: str | None,
) -> JobList:
    created_from = parse_moment(from_, "from")
    if days is not None:
        if days < 1:
            raise InvalidInput("'days' must be at least 1")
        since = coordinator.clock.now() - timedelta(days=days)
        created_from = max(created_from, since) if created_from else since
    page = await coordinator.jobs.list(
        principal,
        parse_statuses(status),
        created_from,
        parse_moment(to, "to", end_of_day=True),
        limit,
        cursor,
    )
    return JobList(
        jobs=await coordinator.results.job_views(page.jobs),
        total=page.total,
        has_more=page.next_cursor is not None,
        next_cursor=page.next_cursor,
    )


@router.get("/jobs", response_model=JobList)
async def list_jobs(
    principal: ClientDep,
    coordinator: CoordinatorDep,
    status: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    days: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> JobList:
    return await _list(principal, coordinator, status, from_, to, days, limit, cursor)


@router.get("/jobs/history", response_model=JobList)
async def job_history(
    principal: ClientDep,
    coordinator: CoordinatorDep,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    status: Annotated[list[str], Query()] = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> JobList:
    return await _list(principal, coordinator, status, from_, to, None, limit, cursor)


@router.get("/jobs/{job_id}", response_model=JobView)
async def get_job(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> JobView:
    job = await coordinator.jobs.get(principal, job_id)
    return await coordinator.results.job_view(job, await coordinator.jobs.waiting_for(job))


_CANCEL_STATUS = {"canceled": 200, "canceling": 202, "failed": 409}


async def _cancel(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> JSONResponse:
    result = await coordinator.jobs.cancel(principal, job_id)
    return JSONResponse(result.model_dump(mode="json"), status_code=_CANCEL_STATUS[result.outcome])


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=CancelResult,
    responses={202: {"model": CancelResult}, 409: {"model": CancelResult}},
)
async def cancel_job(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> JSONResponse:
    return await _cancel(job_id, principal, coordinator)


@router.delete(
    "/jobs/{job_id}",
    response_model=CancelResult,
    responses={202: {"model": CancelResult}, 409: {"model": CancelResult}},
)
async def delete_job(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> JSONResponse:
    """Cancels the job, as the API reference describes."""
    return await _cancel(job_id, principal, coordinator)


@router.post("/files", status_code=201, response_model=FileView)
async def upload_file(
    request: Request, principal: ClientDep, coordinator: CoordinatorDep, name: str = "input"
) -> FileView:
    """Upload an input file as the raw request body (streamed to storage); pass its id as input_file_id.
    413 if it is over the per-file limit or would take the account past its plan's input storage quota."""
    stored = await coordinator.uploads.store_input_file(principal, name, request.stream())
    return FileView(
        file_id=stored.id,
        name=stored.name,
        size=stored.size,
        sha256=stored.sha256,
        created_at=stored.created_at,
    )
