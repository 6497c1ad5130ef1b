"""Result packages as clients see them: the state of a job's results, how long they are kept, and the
`sha256sum -c` checksum file that lists every file of a package."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime, timedelta

from aitbc.domain.errors import InvalidInput
from aitbc.domain.manifest import check_package_path

CHECKSUM_FILE = "output.sha256"


class ResultsState(enum.StrEnum):
    """`jobs.results_state`: nothing uploaded, downloadable, deleted by the client, or removed by retention."""

    NONE = "none"
    AVAILABLE = "available"
    DELETED = "deleted"
    EXPIRED = "expired"


def results_expire_at(completed_at: datetime | None, retention_days: int) -> datetime | None:
    """Completion plus the plan's retention; computed, never stored, so a plan change moves it."""
    if completed_at is None:
        return None
    return completed_at + timedelta(days=retention_days)


def checksum_file(entries: Iterable[tuple[str, str]]) -> bytes:
    """`<sha256>  <path>` lines, paths relative to the package folder, as `sha256sum` writes them."""
    lines = []
    for path, sha256 in entries:
        check_package_path(path)
        lines.append(f"{sha256}  {path}\n")
    return "".join(lines).encode()


def parse_checksum_file(text: str) -> dict[str, str]:
    """The inverse of `checksum_file`; refuses paths that could leave the package folder."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, separator, path = line.partition("  ")
        if not separator or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InvalidInput(f"{CHECKSUM_FILE} line {number} is not '<sha256>  <path>'")
        found[check_package_path(path)] = digest
    return found
