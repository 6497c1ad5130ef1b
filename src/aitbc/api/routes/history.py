"""History routes: stats, streamed exports, a job's timeline, retries. Included before the jobs router so
`/v1/jobs/export` is not taken for a job id."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import ClientDep, CoordinatorDep
from aitbc.api.routes.jobs import (
    DaysQuery,
    FromQuery,
    NameQuery,
    StatusQuery,
    TagQuery,
    ToQuery,
    parse_moment,
    parse_statuses,
    since_days,
)
from aitbc.protocol.billing import StatsView
from aitbc.protocol.jobs import EventMessage, JobView

router = APIRouter(route_class=CheckedRoute, prefix="/v1", tags=["history"])
EXPORT_MEDIA_TYPES = {"json": "application/json", "csv": "text/csv"}


@router.get("/stats", response_model=StatsView)
async def stats(principal: ClientDep, coordinator: CoordinatorDep, days: DaysQuery = None) -> StatsView:
    return await coordinator.history.stats(principal, days)


@router.get("/jobs/export")
async def export(
    principal: ClientDep,
    coordinator: CoordinatorDep,
    format: Literal["json", "csv"] = "json",
    status: StatusQuery = [],  # noqa: B006 - FastAPI copies defaults
    from_: FromQuery = None,
    to: ToQuery = None,
    days: DaysQuery = None,
    tag: TagQuery = None,
    name: NameQuery = None,
) -> StreamingResponse:
    """Every matching job, streamed as a JSON array or CSV (header row, one row per job)."""
    since = since_days(coordinator.clock.now(), days, parse_moment(from_, "from"))
    until = parse_moment(to, "to", True)
    body = coordinator.history.export(principal, format, parse_statuses(status), since, until, tag, name)
    return StreamingResponse(
        body,
        media_type=EXPORT_MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="jobs.{format}"'},
    )


@router.get("/jobs/{job_id}/timeline", response_model=list[EventMessage])
async def timeline(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> list[EventMessage]:
    return await coordinator.history.timeline(principal, job_id)


@router.post("/jobs/{job_id}/retry", status_code=201, response_model=JobView)
async def retry(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> JobView:
    return await coordinator.history.retry(principal, job_id)
