"""Marketplace routes: the GPUs on offer now, and a job's quote on each GPU model on offer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import ClientDep, CoordinatorDep
from aitbc.protocol.jobs import SubmitJobRequest
from aitbc.protocol.marketplace import GpuList, MarketQuote, RuntimeList
from aitbc.protocol.regions import REGION_MAX_LENGTH, REGION_PATTERN

router = APIRouter(route_class=CheckedRoute, prefix="/v1/marketplace", tags=["marketplace"])

ModelQuery = Annotated[
    str | None, Query(min_length=1, max_length=200, description="only miners that serve this model (gpt2)")
]
RegionQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=REGION_MAX_LENGTH,
        pattern=REGION_PATTERN,
        description="only miners in this region (us-west; any case)",
    ),
]
GpuTypeQuery = Annotated[
    str | None,
    Query(max_length=64, pattern=r"^[A-Za-z0-9 _\-]+$", description="only miners with this GPU model (rtx4090)"),
]


@router.get("/gpus", response_model=GpuList)
async def gpus(
    _client: ClientDep,
    coordinator: CoordinatorDep,
    model: ModelQuery = None,
    region: RegionQuery = None,
    gpu_type: GpuTypeQuery = None,
) -> GpuList:
    """The GPUs on offer now: each live miner with its GPUs (model, VRAM, how many are busy), runtimes, models,
    region, price per hour (from the price table) and queue (pending jobs it could take), cheapest first.
    Counts only: no other tenant's job is named."""
    return await coordinator.marketplace.gpus(model, region, gpu_type)


@router.get("/runtimes", response_model=RuntimeList)
async def runtimes(_client: ClientDep, coordinator: CoordinatorDep) -> RuntimeList:
    """The runtimes live miners offer: for each, how many miners, the models they serve, and the JSON Schemas
    (draft 2020-12) of the `input` and `params` its jobs may hold, as the miners declared them. A job is given
    only to a miner whose schemas it is valid for (or one that declared none)."""
    return coordinator.marketplace.runtimes()


@router.post("/quote", response_model=MarketQuote)
async def quote(body: SubmitJobRequest, principal: ClientDep, coordinator: CoordinatorDep) -> MarketQuote:
    """What the job in the body (as `POST /v1/jobs` takes it) would cost on each GPU model that live miners
    offer for it, cheapest first, then the shortest queue; nothing is submitted or held. With no GPU on offer
    that can run it, `best` is null and `reason` says why."""
    return await coordinator.marketplace.quote(principal, body)
