"""Miner routes: register, heartbeat, claim, and the lease-guarded calls on a claimed job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import StreamingResponse

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import CoordinatorDep, MinerDep
from aitbc.api.hang_up import hang_up_watch
from aitbc.protocol.jobs import RAW_BODY
from aitbc.protocol.miners import (
    COMPLETE_BATCH_MAX,
    RESULT_PATH_MAX_LENGTH,
    RESULT_PATH_PATTERN,
    BatchCompleteRequest,
    BatchCompleteResponse,
    ClaimRequest,
    ClaimResponse,
    FailRequest,
    FinishRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    JobDirective,
    LeaseRequest,
    LogsRequest,
    ProgressRequest,
    RegisterRequest,
    RegisterResponse,
    UploadedFile,
)

router = APIRouter(route_class=CheckedRoute, prefix="/v1/miners", tags=["miners"])


@router.post("/register", response_model=RegisterResponse)
async def register(body: RegisterRequest, principal: MinerDep, coordinator: CoordinatorDep) -> RegisterResponse:
    return await coordinator.miners.register(principal, body)


@router.post("/{miner_id}/heartbeat", response_model=HeartbeatResponse)
async def heartbeat(
    miner_id: str, body: HeartbeatRequest, principal: MinerDep, coordinator: CoordinatorDep
) -> HeartbeatResponse:
    leases = await coordinator.miners.heartbeat(principal, miner_id, body.lease_ids, body.wait_seconds)
    return HeartbeatResponse(leases=leases)


@router.post("/{miner_id}/claim", response_model=ClaimResponse)
async def claim(
    miner_id: str, body: ClaimRequest, request: Request, principal: MinerDep, coordinator: CoordinatorDep
) -> ClaimResponse:
    async with hang_up_watch(request) as gone:
        jobs = await coordinator.claiming.claim(
            principal, miner_id, body.max_jobs, body.wait_seconds, gone, start=body.start
        )
    return ClaimResponse(jobs=jobs)


@router.post(
    "/{miner_id}/jobs/complete",
    response_model=BatchCompleteResponse,
    responses={
        200: {"description": "A result per item, in order: each a directive, or the error that refused it alone"},
        404: {"description": "No such miner for this key (no item was looked at)"},
        422: {"description": f"The body is invalid: no item, over {COMPLETE_BATCH_MAX}, or a job named twice"},
    },
)
async def complete_many(
    miner_id: str, body: BatchCompleteRequest, principal: MinerDep, coordinator: CoordinatorDep
) -> BatchCompleteResponse:
    """Complete up to 64 jobs in one call and one transaction. Each item is the body of `complete` (lease,
    signed manifest, usage, run times, timings) plus its `job_id`; upload each job's files first, as for `complete`.
    Items succeed or fail one by one: an item refused — another miner's job (404), a stale lease (409), a
    manifest that does not check (422) — gets that status and message in its result and changes nothing,
    while the others complete and settle in the same transaction. A retried item answers as it did the first
    time, so the whole call can be safely sent again; no job is completed twice."""
    results = await coordinator.finishing.complete_many(principal, miner_id, body.jobs)
    return BatchCompleteResponse(results=results)


@router.post("/{miner_id}/jobs/{job_id}/start", response_model=JobDirective)
async def start(
    miner_id: str, job_id: str, body: LeaseRequest, principal: MinerDep, coordinator: CoordinatorDep
) -> JobDirective:
    return await coordinator.running.start(principal, miner_id, job_id, body.lease_id)


@router.post("/{miner_id}/jobs/{job_id}/progress", response_model=JobDirective)
async def progress(
    miner_id: str, job_id: str, body: ProgressRequest, principal: MinerDep, coordinator: CoordinatorDep
) -> JobDirective:
    return await coordinator.running.progress(principal, miner_id, job_id, body)


@router.post("/{miner_id}/jobs/{job_id}/logs", response_model=JobDirective)
async def logs(
    miner_id: str, job_id: str, body: LogsRequest, principal: MinerDep, coordinator: CoordinatorDep
) -> JobDirective:
    return await coordinator.running.logs(principal, miner_id, job_id, body)


@router.get("/{miner_id}/jobs/{job_id}/input")
async def input_file(
    miner_id: str, job_id: str, lease_id: str, principal: MinerDep, coordinator: CoordinatorDep
) -> StreamingResponse:
    stored = await coordinator.running.input_file(principal, miner_id, job_id, lease_id)
    return StreamingResponse(
        coordinator.blobs.read(stored.blob_key),
        media_type="application/octet-stream",
        headers={"Content-Length": str(stored.size), "X-Sha256": stored.sha256},
    )


@router.put(
    "/{miner_id}/jobs/{job_id}/files/{path:path}",
    response_model=UploadedFile,
    openapi_extra={"requestBody": RAW_BODY},
)
async def upload_result_file(
    miner_id: str,
    job_id: str,
    path: Annotated[str, Path(max_length=RESULT_PATH_MAX_LENGTH, pattern=RESULT_PATH_PATTERN)],
    request: Request,
    principal: MinerDep,
    coordinator: CoordinatorDep,
    lease_id: Annotated[str, Header(alias="X-Lease-Id", min_length=1, max_length=40)],
) -> UploadedFile:
    """One file of the result package, streamed into blob storage; the manifest at `complete` must agree."""
    return await coordinator.running.upload(principal, miner_id, job_id, lease_id, path, request.stream())


@router.post("/{miner_id}/jobs/{job_id}/complete", response_model=JobDirective)
async def complete(
    miner_id: str, job_id: str, body: FinishRequest, principal: MinerDep, coordinator: CoordinatorDep
) -> JobDirective:
    return await coordinator.finishing.complete(principal, miner_id, job_id, body)


@router.post("/{miner_id}/jobs/{job_id}/fail", response_model=JobDirective)
async def fail(
    miner_id: str, job_id: str, body: FailRequest, principal: MinerDep, coordinator: CoordinatorDep
) -> JobDirective:
    return await coordinator.finishing.fail(principal, miner_id, job_id, body)
