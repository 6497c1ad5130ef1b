"""Monitoring routes: who a key is (`GET /v1/whoami`, any role: the connectivity test), the caller's jobs at a
glance (`GET /v1/monitor/jobs`) and the live miners' room (`GET /v1/monitor/miners`)."""

from __future__ import annotations

from fastapi import APIRouter

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import ClientDep, CoordinatorDep, MemberDep
from aitbc.protocol.monitor import JobMetricsView, MinerMetricsView, WhoAmIView
from aitbc.services.monitoring import whoami

router = APIRouter(route_class=CheckedRoute, prefix="/v1", tags=["monitor"])


@router.get("/whoami", response_model=WhoAmIView)
async def who_am_i(principal: MemberDep) -> WhoAmIView:
    return whoami(principal)


@router.get("/monitor/jobs", response_model=JobMetricsView)
async def job_metrics(principal: ClientDep, coordinator: CoordinatorDep) -> JobMetricsView:
    """The caller's jobs: counts by status, queue places of its oldest pending jobs, the last hour's
    throughput, waits from submission to start."""
    return await coordinator.monitor.jobs(principal)


@router.get("/monitor/miners", response_model=MinerMetricsView)
async def miner_metrics(_principal: ClientDep, coordinator: CoordinatorDep) -> MinerMetricsView:
    """The live miners, their slots and how many are free, their GPUs by model."""
    return await coordinator.monitor.miners()
