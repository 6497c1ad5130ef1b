"""Client-facing models of results: the package listing, receipts, the coordinator's key, share links, logs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from aitbc.domain.job import JobStatus
from aitbc.protocol.jobs import Strict, Time

MAX_SHARE_SECONDS = 366 * 86400


class ResultFileView(BaseModel):
    path: str
    size: int
    sha256: str


class ResultPackageView(BaseModel):
    """What a job's result package holds and where to fetch it."""

    job_id: str
    status: JobStatus
    results: str
    partial: bool
    miner_id: str
    manifest_sha256: str
    files: list[ResultFileView]
    total_bytes: int
    zip_bytes: int
    completed_at: Time | None
    results_expire_at: Time | None
    download_path: str
    checksum_path: str


class ReceiptView(BaseModel):
    """The signed receipt (verify `signature` over the canonical JSON of `receipt` with the coordinator's
    key) and the miner-signed manifest it vouches for."""

    job_id: str
    receipt: dict[str, Any]
    signature: str
    key_id: str
    manifest: dict[str, Any]


class CoordinatorKeyView(BaseModel):
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key: str = Field(description="raw 32-byte Ed25519 public key, base64")
    key_id: str


class CreateShareRequest(Strict):
    expires_in_seconds: int | None = Field(
        default=None, ge=60, le=MAX_SHARE_SECONDS, description="default 7 days; capped at the results' retention"
    )


ShareState = Literal["active", "expired", "revoked"]


class ShareView(BaseModel):
    share_id: str
    job_id: str
    state: ShareState
    created_at: Time
    expires_at: Time
    revoked_at: Time | None
    download_count: int
    last_download_at: Time | None


class CreatedShareView(ShareView):
    """A new share link; `token` and `url` are shown this once (only a hash is stored)."""

    token: str
    url: str
    capped: bool = Field(description="the requested expiry was cut to when the results expire")


class ShareList(BaseModel):
    job_id: str
    shares: list[ShareView]


class RevokedShares(BaseModel):
    job_id: str
    revoked: int


class ResultsDeleted(BaseModel):
    job_id: str
    results: str
    message: str


class LogLineView(BaseModel):
    seq: int
    at: Time
    stream: str
    line: str


class LogsView(BaseModel):
    """A page of log lines; while `more`, ask again with `after=last_seq`."""

    job_id: str
    status: JobStatus
    lines: list[LogLineView]
    last_seq: int
    more: bool = False
