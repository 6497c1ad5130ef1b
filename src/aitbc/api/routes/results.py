"""Client routes for results: the package listing, zip download, single files and the checksum file (all
with Content-Length, ETag and Range), the receipt, logs, share links, and deleting results."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import ClientDep, CoordinatorDep
from aitbc.api.routes.jobs import AfterQuery
from aitbc.protocol.results import (
    CreatedShareView,
    CreateShareRequest,
    LogsView,
    ReceiptView,
    ResultPackageView,
    ResultsDeleted,
    RevokedShares,
    ShareList,
    ShareView,
)
from aitbc.services.downloads import Download

router = APIRouter(route_class=CheckedRoute, prefix="/v1/jobs", tags=["results"])


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=` range; None to send the whole (no header, multiple ranges or a
    malformed one, which RFC 9110 lets a server ignore)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0 or size == 0:
                raise RangeNotSatisfiable
            return max(0, size - suffix), size
        start = int(first)
        if start < 0 or (last and int(last) < start):
            return None  # not a valid range: RFC 9110 says to ignore the header
        end = min(int(last) + 1, size) if last else size
    except ValueError:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return start, end


def content_disposition(filename: str) -> str:
    """An attachment header any name fits in: an ASCII fallback and the exact UTF-8 name (RFC 6266)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _matches(header: str | None, etag: str) -> bool:
    """If-None-Match: `*`, or a list of tags one of which (compared weakly, as RFC 9110 says) is ours."""
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags


def download_response(request: Request, download: Download) -> Response:
    """200, 206, 304 or 416 for a download, honouring Range, If-Range and If-None-Match; HEAD gets the
    headers alone."""
    headers = {
        "ETag": download.etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(download.filename),
        "Cache-Control": "private, no-cache",
    }
    if download.sha256:
        headers["X-Sha256"] = download.sha256
    if _matches(request.headers.get("if-none-match"), download.etag):
        return Response(status_code=304, headers=headers)
    if_range = request.headers.get("if-range")
    try:
        wanted = parse_range(request.headers.get("range"), download.size)
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{download.size}"})
    if wanted is not None and if_range is not None and if_range != download.etag:
        wanted = None
    start, end = wanted or (0, download.size)
    status = 206 if wanted is not None else 200
    headers["Content-Length"] = str(end - start)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{download.size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=download.media_type)
    return StreamingResponse(
        download.chunks(start, end), status_code=status, headers=headers, media_type=download.media_type
    )


@router.get("/{job_id}/results", response_model=ResultPackageView)
async def result_package(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> ResultPackageView:
    """What the job's result package holds (the files of its signed manifest) and until when it is kept."""
    return await coordinator.packages.summary(principal, job_id)


@router.delete("/{job_id}/results", response_model=ResultsDeleted)
async def delete_results(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> ResultsDeleted:
    """Delete the result files and revoke the job's share links; the job stays in history. Refused (409)
    while the job runs."""
    return await coordinator.deletion.delete(principal, job_id)


@router.get("/{job_id}/download", response_class=StreamingResponse, operation_id="download_results")
@router.head("/{job_id}/download", response_class=StreamingResponse, operation_id="head_download_results")
async def download(job_id: str, request: Request, principal: ClientDep, coordinator: CoordinatorDep) -> Response:
    """The package as a zip (entries under `<job_id>/`, with `output.sha256`); resumable with Range."""
    return download_response(request, await coordinator.downloads.zip(principal, job_id))


@router.get("/{job_id}/files/{path:path}", response_class=StreamingResponse, operation_id="download_result_file")
@router.head("/{job_id}/files/{path:path}", response_class=StreamingResponse, operation_id="head_result_file")
async def download_file(
    job_id: str, path: str, request: Request, principal: ClientDep, coordinator: CoordinatorDep
) -> Response:
    """One file of the package by its path (`result.txt`, `artifacts/…`), or `output.sha256`."""
    return download_response(request, await coordinator.downloads.file(principal, job_id, path))


@router.get("/{job_id}/receipt", response_model=ReceiptView)
async def receipt(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> ReceiptView:
    """The coordinator-signed receipt and the miner-signed manifest it vouches for."""
    return await coordinator.receipts.receipt(principal, job_id)


@router.get("/{job_id}/logs", response_model=LogsView)
async def logs(
    job_id: str,
    principal: ClientDep,
    coordinator: CoordinatorDep,
    after: AfterQuery = 0,
    limit: Annotated[int, Query(ge=1, le=20000)] = 5000,
) -> LogsView:
    """Log lines the miner sent while the job ran, after event `after`; while `more`, ask again."""
    return await coordinator.logs.logs(principal, job_id, after, limit)


@router.post("/{job_id}/shares", status_code=201, response_model=CreatedShareView)
async def create_share(
    job_id: str, body: CreateShareRequest, request: Request, principal: ClientDep, coordinator: CoordinatorDep
) -> CreatedShareView:
    """A share link that downloads the package with no API key; its token is shown only in this answer."""
    base_url = coordinator.settings.public_url or str(request.base_url)
    return await coordinator.shares.create(principal, job_id, body.expires_in_seconds, base_url)


@router.get("/{job_id}/shares", response_model=ShareList)
async def list_shares(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> ShareList:
    return await coordinator.shares.list(principal, job_id)


@router.delete("/{job_id}/shares/{share_id}", response_model=ShareView)
async def revoke_share(job_id: str, share_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> ShareView:
    return await coordinator.shares.revoke(principal, job_id, share_id)


@router.delete("/{job_id}/shares", response_model=RevokedShares)
async def revoke_shares(job_id: str, principal: ClientDep, coordinator: CoordinatorDep) -> RevokedShares:
    return await coordinator.shares.revoke_all(principal, job_id)
