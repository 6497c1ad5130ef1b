"""The sha256 of a file or a byte stream, read in chunks (never whole): how the miner lists its package, how the
SDK checks what it downloaded, and how `verify` checks a copy, all hash the same way."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

HASH_CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return sha256_chunks(iter(lambda: handle.read(HASH_CHUNK), b""))[1]


class Sha256:
    """The size and sha256 of bytes that arrive in pieces."""

    def __init__(self) -> None:
        self.size = 0
        self._digest = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def sha256_chunks(chunks: Iterable[bytes]) -> tuple[int, str]:
    """(size, sha256) of the bytes, as they arrive."""
    digest = Sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.size, digest.hexdigest()
