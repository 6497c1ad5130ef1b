"""Work that takes several requests (a whole package, a verification), written once as a generator of steps that
`Client` runs blocking and `AsyncClient` runs as coroutines. A step's answer, or its error, goes back into the
generator, so the work reads as straight-line code with ordinary `try`."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aitbc.sdk.calls import Call
from aitbc.sdk.downloads import Progress

T = TypeVar("T")


@dataclass(frozen=True)
class Fetch:
    """Download GET `path` into `destination` (resumable, sha256 checked); answers a `Downloaded`."""

    path: str
    destination: Path
    expected_sha256: str | None = None
    progress: Progress | None = None


@dataclass(frozen=True)
class Digest:
    """Stream GET `path` without keeping it; answers its (size, sha256)."""

    path: str


@dataclass(frozen=True)
class Local:
    """Work on local files (hashing, checking a zip): run in a worker thread by `AsyncClient`."""

    work: Callable[[], Any]


Step = Call[Any] | Fetch | Digest | Local
Steps = Generator[Step, Any, T]
