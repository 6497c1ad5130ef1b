"""Getting a finished job's package accepted: upload every file as a stream (a few at a time: a package of
small files costs about one round trip, not one per file), then `complete` or `fail` with the signed manifest.
What to send is saved next to the package (`finish.json`) before the first try, so a result survives a
coordinator outage and a miner restart, and is retried until the coordinator answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.errors import AitbcError, Conflict, NotFound
from aitbc.domain.job import FailureReason
from aitbc.miner.coordinator_client import CoordinatorClient
from aitbc.miner.identity import write_private
from aitbc.miner.package import PackageLayout, build_manifest, sign_manifest
from aitbc.miner.reporter import sendable
from aitbc.protocol.miners import FailRequest, FinishRequest, JobDirective, ManifestFile, RunTimings
from aitbc.sdk.errors import ConnectionFailed

log = logging.getLogger(__name__)
FINISH_FILE = "finish.json"
PACKAGE_FOLDER = "package"
REJECTED_FOLDER = "rejected"
UPLOADS_AT_ONCE = 4


@dataclass
class Finish:
    """The last word on a job: `complete`, or `fail` with a reason (a cancel is confirmed with `fail`)."""

    job_id: str
    lease_id: str
    verb: Literal["complete", "fail"]
    exit_code: int | None = None
    reason: str | None = None
    message: str = ""
    retryable: bool = False
    with_package: bool = True
    usage: dict[str, Any] = field(default_factory=dict)
    # When the work ran by this miner's clock (ISO 8601): billing charges that, not the time until the
    # coordinator hears of it, which after an outage can be much later.
    started_at: str | None = None
    ended_at: str | None = None
    # How the job's time went (`JobTimings.report`); the upload's seconds are added as it is delivered.
    timings: dict[str, Any] | None = None

    def save(self, job_dir: Path) -> None:
        write_private(job_dir / FINISH_FILE, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, job_dir: Path) -> Finish | None:
        try:
            return cls(**json.loads((job_dir / FINISH_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None


async def deliver(
    client: CoordinatorClient, key: Ed25519PrivateKey, job_dir: Path, finish: Finish
) -> JobDirective | None:
    """Upload and finish; retried while the coordinator is unreachable (an exception leaves it on disk for
    the next start). Returns the coordinator's answer, or None when it refused the result because the job
    moved on without us (stale lease). A package it will not take (too large, say) is reported as a failure
    without it, and kept under `rejected/` for the operator. Clears `job_dir` once the coordinator answered."""
    directive: JobDirective | None
    try:
        directive = await _send(client, key, job_dir, finish)
    except (Conflict, NotFound) as error:
        log.warning("result of %s refused: %s", finish.job_id, error.message)
        shutil.rmtree(job_dir, ignore_errors=True)
        return None
    except ConnectionFailed:
        raise
    except AitbcError as error:
        directive = await _report_refused(client, key, job_dir, finish, error)
    shutil.rmtree(job_dir, ignore_errors=True)
    return directive


async def _report_refused(
    client: CoordinatorClient, key: Ed25519PrivateKey, job_dir: Path, finish: Finish, error: AitbcError
) -> JobDirective | None:
    rejected = job_dir.parent.parent / REJECTED_FOLDER / job_dir.name
    log.error("result of %s refused (%s); kept in %s", finish.job_id, error.message, rejected)
    rejected.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(rejected, ignore_errors=True)
    shutil.copytree(job_dir, rejected, symlinks=True)
    if not finish.with_package:
        return None
    bare = Finish(
        job_id=finish.job_id,
        lease_id=finish.lease_id,
        verb="fail",
        exit_code=finish.exit_code,
        reason=FailureReason.RUNTIME_ERROR.value,
        message=f"the coordinator refused the job's result package: {error.message}",
        with_package=False,
        usage=finish.usage,
        started_at=finish.started_at,
        ended_at=finish.ended_at,
        timings=finish.timings,
    )
    try:
        return await _send(client, key, job_dir, bare)
    except AitbcError as again:
        log.error("could not report the refused result of %s either: %s", finish.job_id, again.message)
        return None


async def _upload_files(
    client: CoordinatorClient, finish: Finish, layout: PackageLayout, files: list[ManifestFile]
) -> None:
    """Upload every file of the manifest, `UPLOADS_AT_ONCE` at a time; the first failure stops the others (the
    whole delivery is retried, and an upload of a path replaces what an earlier try stored)."""
    room = asyncio.Semaphore(UPLOADS_AT_ONCE)

    async def upload(entry: ManifestFile) -> None:
        async with room:
            uploaded = await client.upload(finish.job_id, finish.lease_id, entry.path, layout.root / entry.path)
        if uploaded.sha256 != entry.sha256:
            raise AitbcError(f"{entry.path} changed while it was uploaded")

    uploads = [asyncio.ensure_future(upload(entry)) for entry in files]
    try:
        await asyncio.gather(*uploads)
    finally:
        for pending in uploads:
            pending.cancel()
        await asyncio.gather(*uploads, return_exceptions=True)


def _timings(finish: Finish, upload_seconds: float | None) -> RunTimings | None:
    """What `complete`/`fail` say of the job's time: the run's parts, and this delivery's upload."""
    if finish.timings is None:
        return None
    try:
        return RunTimings.model_validate({**finish.timings, "upload_seconds": upload_seconds})
    except ValueError:  # a finish.json from an older or damaged miner: no breakdown rather than no result
        return None


async def _send(client: CoordinatorClient, key: Ed25519PrivateKey, job_dir: Path, finish: Finish) -> JobDirective:
    manifest = None
    signature = None
    upload_seconds = None
    if finish.with_package:
        began = time.monotonic()
        layout = PackageLayout(job_dir / PACKAGE_FOLDER)
        manifest = build_manifest(layout, finish.job_id, client.miner_id)
        await _upload_files(client, finish, layout, manifest.files)
        signature = sign_manifest(key, manifest)
        upload_seconds = round(time.monotonic() - began, 3)
    timings = _timings(finish, upload_seconds)
    if finish.verb == "complete":
        request = FinishRequest(
            lease_id=finish.lease_id,
            manifest=manifest,
            signature=signature,
            exit_code=finish.exit_code,
            usage=finish.usage,
            started_at=finish.started_at,
            ended_at=finish.ended_at,
            timings=timings,
        )
        return await client.complete(finish.job_id, request)
    failure = FailRequest(
        lease_id=finish.lease_id,
        manifest=manifest,
        signature=signature,
        exit_code=finish.exit_code,
        usage=finish.usage,
        started_at=finish.started_at,
        ended_at=finish.ended_at,
        timings=timings,
        reason=FailureReason(finish.reason or FailureReason.RUNTIME_ERROR.value),
        message=sendable(finish.message[:10000]),
        retryable=finish.retryable,
    )
    return await client.fail(finish.job_id, failure)
