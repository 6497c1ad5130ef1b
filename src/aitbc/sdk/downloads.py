"""Download plumbing shared by `Client` and `AsyncClient`: paths of package files, `.part` files that a
later download resumes from, and the final sha256 check."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aitbc.domain.errors import AitbcError

DOWNLOAD_CHUNK = 1024 * 1024
DOWNLOAD_ATTEMPTS = 5
Progress = Callable[[int], None]


class DownloadCorrupted(AitbcError):
    """The bytes that arrived do not have the sha256 the package lists."""

    code = "download_corrupted"


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    sha256: str
    resumed_from: int


def file_path(job_id: str, path: str) -> str:
    return f"/v1/jobs/{job_id}/files/{quote(path, safe='/')}"


def zip_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/download"


def part_of(destination: Path) -> Path:
    """Where an unfinished download lies; a later download resumes from it."""
    return destination.with_name(destination.name + ".part")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(DOWNLOAD_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def range_headers(offset: int, etag: str | None) -> dict[str, str]:
    if not offset:
        return {}
    return {"Range": f"bytes={offset}-", **({"If-Range": etag} if etag else {})}


def finish_download(part: Path, destination: Path, expected_sha256: str | None, resumed_from: int) -> Downloaded:
    digest = sha256_of(part)
    if expected_sha256 is not None and digest != expected_sha256:
        part.unlink(missing_ok=True)
        raise DownloadCorrupted(f"{destination.name}: received sha256 {digest}, expected {expected_sha256}")
    size = part.stat().st_size
    part.replace(destination)
    return Downloaded(path=destination, size=size, sha256=digest, resumed_from=resumed_from)
