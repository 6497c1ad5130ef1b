"""One download, without the I/O: what to ask for (Range after an interruption, guarded by If-Range), how to
open the `.part` file for the answer, when to try again, and the final sha256 check, which sends a stale
partial file from an earlier run back for one whole fetch. `Client` and `AsyncClient` only move the bytes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import httpx

from aitbc.domain.digests import sha256_file
from aitbc.domain.errors import AitbcError
from aitbc.sdk.errors import raise_for_status

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


def range_headers(offset: int, etag: str | None) -> dict[str, str]:
    if not offset:
        return {}
    return {"Range": f"bytes={offset}-", **({"If-Range": etag} if etag else {})}


RESULT_HEAD_BYTES = 4096


@dataclass(frozen=True)
class ResultHead:
    """The start of a job's result.txt: `data` (at most what was asked), and the file's whole `size`."""

    data: bytes
    size: int

    @property
    def complete(self) -> bool:
        return len(self.data) >= self.size


def head_range(max_bytes: int) -> dict[str, str]:
    return {"Range": f"bytes=0-{max_bytes - 1}"}


def result_head(response: httpx.Response, data: bytes) -> ResultHead:
    """A 206 names the whole size in Content-Range; a 200 (an empty file, say) is the whole file."""
    total = response.headers.get("content-range", "").rpartition("/")[2]
    return ResultHead(data=data, size=int(total) if total.isdigit() else len(data))


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@dataclass
class Writing:
    """Where the bytes of one answer go: appended to the `.part` file (a 206) or replacing it (a 200)."""

    mode: Literal["ab", "wb"]
    done: int
    progress: Progress | None

    def wrote(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done)


class Transfer:
    """The state of one download of `path` into `destination` through its `.part` file."""

    def __init__(
        self, path: str, destination: Path, expected_sha256: str | None, progress: Progress | None, attempts: int
    ) -> None:
        self.path = path
        self.destination = destination
        self.part = part_of(destination)
        self.expected_sha256 = expected_sha256
        self.progress = progress
        self.attempts = attempts
        self.etag: str | None = None
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self.resumed_from = _size(self.part)

    def request_headers(self) -> dict[str, str]:
        return range_headers(_size(self.part), self.etag)

    def answer(self, response: httpx.Response) -> Writing | None:
        """How to write this answer's body (whose error bodies the caller has read); None: the `.part` file no
        longer fits the file (416), so it is gone and the next attempt starts over."""
        if response.status_code == 416:
            self.part.unlink(missing_ok=True)
            return None
        raise_for_status(response)
        self.etag = response.headers.get("etag")
        if response.status_code == 206:
            return Writing("ab", _size(self.part), self.progress)
        return Writing("wb", 0, self.progress)

    def backoff(self, attempt: int) -> float | None:
        """Seconds to wait before trying again after a broken connection; None when out of attempts."""
        if attempt >= self.attempts - 1:
            return None
        return min(0.2 * 2.0**attempt, 3.0)

    def finish(self) -> Downloaded | None:
        """Check and move the finished `.part` file into place; None: it began with a stale partial file whose
        bytes were wrong, so it is gone and the caller fetches the whole file once more."""
        digest = sha256_file(self.part)
        if self.expected_sha256 is not None and digest != self.expected_sha256:
            self.part.unlink(missing_ok=True)
            if self.resumed_from:
                self.resumed_from = 0
                self.etag = None
                return None
            raise DownloadCorrupted(
                f"{self.destination.name}: received sha256 {digest}, expected {self.expected_sha256}"
            )
        size = self.part.stat().st_size
        self.part.replace(self.destination)
        return Downloaded(path=self.destination, size=size, sha256=digest, resumed_from=self.resumed_from)
