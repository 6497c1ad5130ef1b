"""The BlobStore interface: bytes in and out as streams, never whole in memory."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class BlobInfo:
    """What a write stored, measured while it streamed: the zip download needs the CRC-32 up front."""

    size: int
    sha256: str
    crc32: int


@dataclass(frozen=True)
class BlobEntry:
    """A stored blob as a listing shows it; `version` changes whenever its bytes do, so a write still in
    progress never looks idle."""

    key: str
    size: int
    version: int


class BlobStore(Protocol):
    async def write(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int | None = None) -> BlobInfo:
        """Store a stream under `key` (replacing what was there only once it is complete), with its size,
        SHA-256 and CRC-32; raise PayloadTooLarge, storing nothing, if it grows past `max_bytes`."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of the blob; NotFound if there is none."""

    async def size(self, key: str) -> int | None: ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under `prefix/`; return how many."""

    def entries(self, prefix: str) -> AsyncIterator[BlobEntry]:
        """Every blob under `prefix/`, unfinished writes included (a crash can leave those behind)."""
