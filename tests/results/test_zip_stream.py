"""The zip layout on its own, over a real local blob store: readable by Python and `unzip -t`, with ZIP64
records when forced, exact for every byte range, and its length independent of the CRCs."""

from __future__ import annotations

import io
import random
import subprocess
import zipfile
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aitbc.blobs.local import LocalBlobStore
from aitbc.blobs.zip_stream import ZipLayout, ZipMember, build_layout, dos_time, stream_range

MOMENT = datetime(2026, 3, 4, 5, 6, 8, tzinfo=UTC)


async def blobs_with(tmp_path: Path, contents: dict[str, bytes]) -> tuple[LocalBlobStore, list[ZipMember]]:
    store = LocalBlobStore(tmp_path / "blobs")
    members = []
    for index, (name, data) in enumerate(contents.items()):
        key = f"test/{index}"

        async def chunks(data: bytes = data) -> AsyncIterator[bytes]:
            yield data

        await store.write(key, chunks())
        members.append(ZipMember(name=name, size=len(data), crc32=zlib.crc32(data), blob_key=key))
    return store, members


async def read_all(store: LocalBlobStore, layout: ZipLayout, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in stream_range(layout, store.read, start, end)])


@pytest.mark.parametrize("force_zip64", [False, True], ids=["zip32", "zip64"])
async def test_archives_that_tools_accept(tmp_path: Path, force_zip64: bool) -> None:
    contents = {
        "job_x/result.txt": b"hello\n",
        "job_x/logs/stderr.log": b"",
        "job_x/artifacts/big.bin": random.Random(7).randbytes(2_500_000),
        "job_x/artifacts/名前.txt": b"unicode\n",
    }
    store, members = await blobs_with(tmp_path, contents)
    inline = b"abc  def\n"
    members.append(ZipMember(name="job_x/output.sha256", size=len(inline), crc32=zlib.crc32(inline), data=inline))
    layout = build_layout(members, MOMENT, force_zip64=force_zip64)
    data = await read_all(store, layout, 0, layout.size)
    assert len(data) == layout.size
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert {name: archive.read(name) for name in archive.namelist()} == {**contents, "job_x/output.sha256": inline}
    assert archive.getinfo("job_x/result.txt").date_time == (2026, 3, 4, 5, 6, 8)
    assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    assert (b"PK\x06\x06" in data[-200:]) is force_zip64
    path = tmp_path / "archive.zip"
    path.write_bytes(data)
    tested = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout + tested.stderr
    # Any byte range is exactly that slice of the whole.
    rng = random.Random(1)
    for _ in range(40):
        start = rng.randrange(layout.size)
        end = rng.randrange(start, layout.size) + 1
        assert await read_all(store, layout, start, end) == data[start:end]
    # The length does not depend on the CRCs, so it is known before they are computed.
    unknown = [ZipMember(m.name, m.size, 0, m.blob_key, m.data) for m in members]
    assert build_layout(unknown, MOMENT, force_zip64=force_zip64).size == layout.size


async def test_an_empty_package_is_a_valid_zip(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    layout = build_layout([], MOMENT)
    data = await read_all(store, layout, 0, layout.size)
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == []


def test_dos_time_cannot_go_before_1980() -> None:
    assert dos_time(datetime(1970, 1, 1, tzinfo=UTC))[1] >> 9 == 0
    assert dos_time(MOMENT) == ((5 << 11) | (6 << 5) | 4, ((2026 - 1980) << 9) | (3 << 5) | 4)
