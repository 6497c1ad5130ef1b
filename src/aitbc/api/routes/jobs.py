"""Client routes: submit, read, list, history, cancel, input files."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import ClientDep, CoordinatorDep
from aitbc.api.hang_up import hang_up_watch
from aitbc.api.preferences import PREFER_HEADER, preferred_wait
from aitbc.domain.clock import MOMENT_RANGE, in_moment_range
from aitbc.domain.errors import InvalidInput
from aitbc.domain.job import JobStatus
from aitbc.domain.labels import JOB_NAME_MAX_LENGTH, JOB_NAME_PATTERN, TAG_MAX_LENGTH, TAG_PATTERN
from aitbc.protocol.batches import MAX_BATCH_BYTES, BatchResult, SubmitBatchRequest
from aitbc.protocol.cancels import CancelJobsRequest, CancelJobsResult
from aitbc.protocol.jobs import (
    INPUT_FILE_NAME_MAX_LENGTH,
    INPUT_FILE_NAME_PATTERN,
    MOMENT_PATTERN,
    RAW_BODY,
    CancelResult,
    FileView,
    JobList,
    JobView,
    SubmitJobRequest,
    SubmittedJobView,
)

router = APIRouter(route_class=CheckedRoute, prefix="/v1", tags=["jobs"])


MAX_DAYS = 36500
# `days`: the last N days, up to a century (a count that stays inside the dates `datetime` can hold).
DaysQuery = Annotated[int | None, Query(ge=1, le=MAX_DAYS, description=f"the last N days (1 to {MAX_DAYS})")]
# `after`: a row id (ledger entry, event) is a signed 64-bit integer; a larger number cannot even be bound as a
# database parameter (it was a 500 on SQLite).
MAX_ROW_ID = 2**63 - 1
AfterQuery = Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="the id of the last item seen (0: from the start)")]


_MOMENT_HELP = "a day (2026-01-31) or an ISO 8601 time (2026-01-31T10:00:00Z; UTC when no zone is given)"
# Declared here, enforced by `parse_moment` and `parse_statuses` (with messages that say what to write instead).
_MOMENT_SCHEMA = {"pattern": MOMENT_PATTERN}
FromQuery = Annotated[
    str | None, Query(alias="from", description=f"from {_MOMENT_HELP}", json_schema_extra=_MOMENT_SCHEMA)
]
ToQuery = Annotated[
    str | None,
    Query(description=f"up to {_MOMENT_HELP}; a day includes all of it", json_schema_extra=_MOMENT_SCHEMA),
]
TagQuery = Annotated[
    str | None, Query(max_length=TAG_MAX_LENGTH, pattern=TAG_PATTERN, description="only jobs with this tag")
]
NameQuery = Annotated[
    str | None,
    Query(max_length=JOB_NAME_MAX_LENGTH, pattern=JOB_NAME_PATTERN, description="only jobs of exactly this name"),
]


def parse_moment(value: str | None, name: str, end_of_day: bool = False) -> datetime | None:
    """`2026-01-31` is a whole day (as `to`, up to the end of it); a full ISO 8601 time is taken as is."""
    if value is None or value == "":
        return None
    try:
        if not re.fullmatch(MOMENT_PATTERN, value):
            raise ValueError(value)
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            moment = moment + timedelta(days=1) if end_of_day else moment
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            moment = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError as error:
        raise InvalidInput(f"'{name}' must be a date (2026-01-31) or an ISO 8601 time, not {value!r}") from error
    except OverflowError:
        moment = None
    if moment is None or not in_moment_range(moment):
        raise InvalidInput(f"'{name}' must be {MOMENT_RANGE}, not {value!r}")
    return moment


def since_days(now: datetime, days: int | None, since: datetime | None) -> datetime | None:
    """The later of `since` and the start of the last `days` days."""
    if days is None:
        return since
    recent = now - timedelta(days=days)
    return max(since, recent) if since else recent


# Words the guides use for groups of statuses.
STATUS_ALIASES = {
    "submitted": [JobStatus.PENDING],
    "active": [JobStatus.PENDING, JobStatus.ASSIGNED, JobStatus.RUNNING, JobStatus.CANCELING],
    "finished": [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED],
}


_STATUS_NAMES = "|".join([status.value for status in JobStatus] + list(STATUS_ALIASES))
# `status`: one or more names, comma-separated or repeated (`status=pending,running&status=failed`).
STATUS_PATTERN = rf"^\s*(?:(?:{_STATUS_NAMES})\s*)?(?:,\s*(?:(?:{_STATUS_NAMES})\s*)?)*$"
StatusQuery = Annotated[
    list[str],
    Query(
        description=f"statuses or groups of them: {_STATUS_NAMES.replace('|', ', ')}",
        json_schema_extra={"items": {"type": "string", "pattern": STATUS_PATTERN}},
    ),
]


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


@router.post(
    "/jobs",
    status_code=201,
    response_model=SubmittedJobView,
    responses={
        200: {"model": SubmittedJobView, "description": "A replay: this Idempotency-Key already made the job"},
        422: {"description": "Invalid, or no connected miner can run the job and it sets no queue_timeout_seconds"},
    },
    openapi_extra=PREFER_HEADER,
)
async def submit_job(
    body: SubmitJobRequest,
    principal: ClientDep,
    coordinator: CoordinatorDep,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)] = None,
) -> SubmittedJobView:
    """Submit a job: 201 with its status object and `warnings` (200 for a replay of an Idempotency-Key). A job no
    connected miner can run is refused (422, saying what it needs and what is on offer) unless it sets
    `queue_timeout_seconds`. With `Prefer: wait=N` the answer waits up to N seconds (at most 60) for the job to
    end, and then carries its `result`."""
    seconds = preferred_wait(request)
    if seconds is None:
        submitted = await coordinator.job_views.submit(principal, body, idempotency_key)
    else:
        async with hang_up_watch(request) as gone:
            submitted = await coordinator.job_views.submit_and_wait(principal, body, idempotency_key, seconds, gone)
        response.headers["Preference-Applied"] = f"wait={seconds}"
    if not submitted.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return submitted.view


@router.post(
    "/jobs/batch",
    status_code=201,
    response_model=BatchResult,
    responses={
        200: {"model": BatchResult, "description": "Every item was a replay of its idempotency_key"},
        402: {"description": "An item's hold does not fit the balance; `item` names it and nothing was stored"},
        413: {"description": f"The body is over {MAX_BATCH_BYTES} bytes, or an item's inline input over its limit"},
        422: {"description": "An item is invalid (or there are over 1000); `item` names it and nothing was stored"},
        429: {"description": "The batch would pass the plan's unfinished-job cap; `item` names the first past it"},
    },
)
async def submit_batch(
    body: SubmitBatchRequest, principal: ClientDep, coordinator: CoordinatorDep, response: Response
) -> BatchResult:
    """Submit up to 1000 jobs in one request and one transaction: all are stored, or none. Each item is the
    body of POST /v1/jobs plus an optional `idempotency_key`; an item replayed with its key answers the job it
    made. The batch counts as one request toward the rate limit and as one job per item toward the cap."""
    result = await coordinator.job_views.submit_many(principal, body.jobs)
    if not result.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return result


async def _list(
    principal: ClientDep,
    coordinator: CoordinatorDep,
    status: list[str],
    from_: str | None,
    to: str | None,
    days: int | None,
    limit: int,
    cursor: str | None,
    tag: str | None = None,
    name: str | None = None,
) -> JobList:
    created_from = since_days(coordinator.clock.now(), days, parse_moment(from_, "from"))
    return await coordinator.job_views.list(
        principal,
        parse_statuses(status),
        created_from,
        parse_moment(to, "to", end_of_day=True),
        limit,
        cursor,
        tag,
        name,
    )


@router.get("/jobs", response_model=JobList)
async def list_jobs(
    principal: ClientDep,
    coordinator: CoordinatorDep,
    status: StatusQuery = [],  # noqa: B006 - FastAPI copies defaults
    from_: FromQuery = None,
    to: ToQuery = None,
    days: DaysQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
    tag: TagQuery = None,
    name: NameQuery = None,
) -> JobList:
    return await _list(principal, coordinator, status, from_, to, days, limit, cursor, tag, name)


@router.get("/jobs/history", response_model=JobList)
async def job_history(
    principal: ClientDep,
    coordinator: CoordinatorDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    status: StatusQuery = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> JobList:
    return await _list(principal, coordinator, status, from_, to, None, limit, cursor)


@router.post("/jobs/cancel", response_model=CancelJobsResult)
async def cancel_jobs(body: CancelJobsRequest, principal: ClientDep, coordinator: CoordinatorDep) -> CancelJobsResult:
    """Cancel your unfinished jobs that the filter matches (as `GET /v1/jobs` filters: statuses, tag, name,
    from/to), at most `limit` (1000) a call, newest first: pending ones at once, assigned or running ones by
    their miners. `more` says more matched: call again. A body with no filter must say `"all": true`."""
    if not body.filtered and not body.all:
        raise InvalidInput('give a filter (status, tag, name, from, to), or "all": true to cancel every unfinished job')
    where = coordinator.jobs.filter(
        principal,
        [JobStatus(status) for status in body.status],
        parse_moment(body.from_, "from"),
        parse_moment(body.to, "to", end_of_day=True),
        body.tag,
        body.name,
    )
    return await coordinator.job_views.cancel_matching(where, body.limit)


@router.get("/jobs/{job_id}", response_model=JobView, openapi_extra=PREFER_HEADER)
async def get_job(
    job_id: str, principal: ClientDep, coordinator: CoordinatorDep, request: Request
) -> JobView | JSONResponse:
    """The job's status object. With `Prefer: wait=N` the answer waits up to N seconds (at most 60) for the job
    to end, and then carries its `result`."""
    seconds = preferred_wait(request)
    if seconds is None:
        return await coordinator.job_views.get(principal, job_id)
    async with hang_up_watch(request) as gone:
        view = await coordinator.job_views.get_and_wait(principal, job_id, seconds, gone)
    return JSONResponse(view.model_dump(mode="json"), headers={"Preference-Applied": f"wait={seconds}"})


_CANCEL_STATUS = {"canceled": 200, "canceling": 202, "failed": 409}


async def _cancel(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> JSONResponse:
    result = await coordinator.job_views.cancel(principal, job_id)
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


@router.post("/files", status_code=201, response_model=FileView, openapi_extra={"requestBody": RAW_BODY})
async def upload_file(
    request: Request,
    principal: ClientDep,
    coordinator: CoordinatorDep,
    name: Annotated[
        str,
        Query(
            min_length=1,
            max_length=INPUT_FILE_NAME_MAX_LENGTH,
            pattern=INPUT_FILE_NAME_PATTERN,
            description="the file's name: folders are dropped, the rest (at most 255 characters) is kept",
        ),
    ] = "input",
) -> FileView:
    """Upload an input file as the raw request body (streamed to storage); pass its id as input_file_id.
    413 if it is over the per-file limit or would take the account past its plan's input storage quota."""
    return await coordinator.uploads.upload_input_file(principal, name, request.stream())
