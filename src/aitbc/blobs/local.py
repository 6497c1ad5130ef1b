"""Blobs as files under one folder; writes land in a temporary file and are renamed into place."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from stat import S_ISREG

import anyio

from aitbc.blobs.interface import BlobEntry, BlobInfo
from aitbc.domain.errors import InvalidInput, NotFound, PayloadTooLarge
from aitbc.private_files import make_private_folders, open_private, private_folder

CHUNK_SIZE = 1024 * 1024
LIST_GROUP = 256  # subfolders listed per thread hop
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9._\- ]+$")


class LocalBlobStore:
    """Folders 0700 and files 0600: blobs are tenants' inputs and results."""

    def __init__(self, root: Path) -> None:
        self.root = private_folder(root.resolve())

    def _path(self, key: str) -> Path:
        segments = key.split("/")
        if not key or any(s in ("", ".", "..") or not _SAFE_SEGMENT.match(s) for s in segments):
            raise InvalidInput(f"invalid blob key {key!r}")
        path = self.root.joinpath(*segments)
        if not path.resolve().is_relative_to(self.root):
            raise InvalidInput(f"invalid blob key {key!r}")
        return path

    async def write(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int | None = None) -> BlobInfo:
        path = self._path(key)
        await anyio.to_thread.run_sync(make_private_folders, path.parent)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{id(chunks)}.partial")
        digest = hashlib.sha256()
        crc32 = 0
        size = 0
        try:
            async with await anyio.open_file(temporary, "wb", opener=open_private) as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLarge(f"upload exceeds the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    crc32 = zlib.crc32(chunk, crc32)
                    await handle.write(chunk)
            await anyio.to_thread.run_sync(os.replace, temporary, path)
        except BaseException:
            await anyio.to_thread.run_sync(lambda: temporary.unlink(missing_ok=True))
            raise
        return BlobInfo(size=size, sha256=digest.hexdigest(), crc32=crc32)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await anyio.open_file(path, "rb")
        except FileNotFoundError as error:
            raise NotFound(f"blob {key} not found") from error
        async with handle:
            await handle.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                chunk = await handle.read(want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    async def size(self, key: str) -> int | None:
        path = self._path(key)
        try:
            return (await anyio.Path(path).stat()).st_size
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    async def delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix)

        def remove() -> int:
            if not folder.exists():
                return 0
            count = sum(1 for item in folder.rglob("*") if item.is_file())
            shutil.rmtree(folder)
            return count

        return await anyio.to_thread.run_sync(remove)

    async def entries(self, prefix: str) -> AsyncIterator[BlobEntry]:
        """Listed a group of subfolders at a time, in a thread, so a large store is never held whole in memory
        and the event loop is never blocked for long."""
        folder = self._path(prefix)

        def children() -> list[str]:
            return sorted(os.listdir(folder)) if folder.is_dir() else []

        def files_under(names: list[str]) -> list[BlobEntry]:
            found = []
            for name in names:
                for directory, _, files in os.walk(folder / name):
                    for file in sorted(files):
                        path = os.path.join(directory, file)
                        try:
                            stat = os.lstat(path)
                        except FileNotFoundError:
                            continue  # removed while listed
                        if S_ISREG(stat.st_mode):
                            key = os.path.relpath(path, self.root).replace(os.sep, "/")
                            found.append(BlobEntry(key=key, size=stat.st_size, version=stat.st_mtime_ns))
            return found

        names = await anyio.to_thread.run_sync(children)
        for start in range(0, len(names), LIST_GROUP):
            for entry in await anyio.to_thread.run_sync(files_under, names[start : start + LIST_GROUP]):
                yield entry
