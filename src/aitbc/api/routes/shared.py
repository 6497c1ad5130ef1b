"""Routes anyone may call without a key: a share link's download, and the coordinator's public key that
receipts are signed with."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import CoordinatorDep
from aitbc.api.routes.results import RangeNotSatisfiable, download_response, parse_range
from aitbc.protocol.results import CoordinatorKeyView

router = APIRouter(route_class=CheckedRoute, tags=["public"])


@router.get("/v1/shared/{token}", response_class=StreamingResponse, operation_id="download_shared")
@router.head("/v1/shared/{token}", response_class=StreamingResponse, operation_id="head_shared")
async def shared_download(token: str, request: Request, coordinator: CoordinatorDep) -> Response:
    """The shared package as a zip; 410 once the link is revoked or expired, 404 for a token never issued."""
    share, download = await coordinator.shares.open(token)
    response = download_response(request, download)
    try:
        wanted = parse_range(request.headers.get("range"), download.size)
    except RangeNotSatisfiable:
        wanted = None
    if request.method == "GET" and response.status_code in (200, 206) and (wanted is None or wanted[0] == 0):
        await coordinator.shares.count_download(share)  # a resumed download is the same download
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/v1/coordinator/key", response_model=CoordinatorKeyView)
async def coordinator_key(coordinator: CoordinatorDep) -> CoordinatorKeyView:
    """The Ed25519 key receipts are signed with; `aitbc client verify` pins it on first use."""
    return coordinator.receipts.coordinator_key()


@router.get("/.well-known/aitbc-coordinator.json", response_model=CoordinatorKeyView)
async def well_known(coordinator: CoordinatorDep) -> CoordinatorKeyView:
    return coordinator.receipts.coordinator_key()
