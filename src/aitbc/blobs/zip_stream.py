"""A zip archive laid out before a byte is sent, so its exact length, its ETag and any byte range are known
up front and the archive streams straight from blob storage.

Entries are stored (no compression) with their CRC-32 and sizes in the local headers, so no data
descriptors are needed; ZIP64 records appear only when a size, an offset or the entry count needs them.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
END_RECORD = struct.Struct("<IHHHHIIH")
ZIP64_END_RECORD = struct.Struct("<IQHHIIQQQQ")
ZIP64_LOCATOR = struct.Struct("<IIQI")

LIMIT_32 = 0xFFFFFFFF
LIMIT_16 = 0xFFFF
UTF8_NAMES = 0x0800
STORED = 0
VERSION_PLAIN = 20
VERSION_ZIP64 = 45
MADE_BY_UNIX = 3 << 8
REGULAR_FILE_MODE = 0o100644


@dataclass(frozen=True)
class BlobSlice:
    """Bytes [start, start + length) of a blob."""

    key: str
    start: int
    length: int


@dataclass(frozen=True)
class ZipMember:
    """One entry: its name in the archive and where its bytes come from (a blob, or bytes made here)."""

    name: str
    size: int
    crc32: int
    blob_key: str | None = None
    data: bytes | None = None


Part = bytes | BlobSlice


@dataclass(frozen=True)
class ZipLayout:
    parts: tuple[tuple[int, Part], ...]  # (offset in the archive, part)
    size: int


def dos_time(moment: datetime) -> tuple[int, int]:
    """(time, date) in MS-DOS format, which cannot go before 1980."""
    year = max(1980, min(moment.year, 2107))
    date = ((year - 1980) << 9) | (moment.month << 5) | moment.day
    time = (moment.hour << 11) | (moment.minute << 5) | (moment.second // 2)
    return time, date


def _part_length(part: Part) -> int:
    return len(part) if isinstance(part, bytes) else part.length


def build_layout(members: Sequence[ZipMember], modified: datetime, force_zip64: bool = False) -> ZipLayout:
    time, date = dos_time(modified)
    parts: list[tuple[int, Part]] = []
    central: list[bytes] = []
    offset = 0

    def add(part: Part) -> None:
        nonlocal offset
        parts.append((offset, part))
        offset += _part_length(part)

    for member in members:
        name = member.name.encode()
        header_offset = offset
        big = force_zip64 or member.size >= LIMIT_32
        local_extra = struct.pack("<HHQQ", 1, 16, member.size, member.size) if big else b""
        local_size = LIMIT_32 if big else member.size
        local = LOCAL_HEADER.pack(
            0x04034B50,
            VERSION_ZIP64 if big else VERSION_PLAIN,
            UTF8_NAMES,
            STORED,
            time,
            date,
            member.crc32,
            local_size,
            local_size,
            len(name),
            len(local_extra),
        )
        add(local + name + local_extra)
        if member.data is not None:
            add(member.data)
        elif member.size:
            assert member.blob_key is not None
            add(BlobSlice(member.blob_key, 0, member.size))
        central.append(_central_entry(name, member, header_offset, time, date, force_zip64))

    directory = b"".join(central)
    directory_offset = offset
    add(directory)
    add(_end_records(len(members), len(directory), directory_offset, offset, force_zip64))
    return ZipLayout(parts=tuple(parts), size=offset)


def _central_entry(name: bytes, member: ZipMember, header_offset: int, time: int, date: int, force: bool) -> bytes:
    extra_values: list[int] = []
    size_field = member.size
    if force or member.size >= LIMIT_32:
        extra_values += [member.size, member.size]
        size_field = LIMIT_32
    offset_field = header_offset
    if force or header_offset >= LIMIT_32:
        extra_values.append(header_offset)
        offset_field = LIMIT_32
    extra = b""
    if extra_values:
        extra = struct.pack("<HH", 1, 8 * len(extra_values)) + struct.pack(f"<{len(extra_values)}Q", *extra_values)
    version = VERSION_ZIP64 if extra_values else VERSION_PLAIN
    header = CENTRAL_HEADER.pack(
        0x02014B50,
        MADE_BY_UNIX | version,
        version,
        UTF8_NAMES,
        STORED,
        time,
        date,
        member.crc32,
        size_field,
        size_field,
        len(name),
        len(extra),
        0,
        0,
        0,
        REGULAR_FILE_MODE << 16,
        offset_field,
    )
    return header + name + extra


def _end_records(count: int, directory_size: int, directory_offset: int, end_offset: int, force: bool) -> bytes:
    needs_zip64 = force or count >= LIMIT_16 or directory_size >= LIMIT_32 or directory_offset >= LIMIT_32
    records = b""
    if needs_zip64:
        records += ZIP64_END_RECORD.pack(
            0x06064B50,
            ZIP64_END_RECORD.size - 12,
            MADE_BY_UNIX | VERSION_ZIP64,
            VERSION_ZIP64,
            0,
            0,
            count,
            count,
            directory_size,
            directory_offset,
        )
        records += ZIP64_LOCATOR.pack(0x07064B50, 0, end_offset, 1)
    records += END_RECORD.pack(
        0x06054B50,
        0,
        0,
        min(count, LIMIT_16),
        min(count, LIMIT_16),
        min(directory_size, LIMIT_32),
        min(directory_offset, LIMIT_32),
        0,
    )
    return records


BlobReader = Callable[[str, int, int], AsyncIterator[bytes]]


async def stream_range(layout: ZipLayout, read: BlobReader, start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes [start, end) of the archive; blob parts are read with `read(key, start, end)`."""
    for offset, part in layout.parts:
        length = _part_length(part)
        if offset + length <= start:
            continue
        if offset >= end:
            return
        low = max(start, offset) - offset
        high = min(end, offset + length) - offset
        if isinstance(part, bytes):
            yield part[low:high]
        else:
            async for chunk in read(part.key, part.start + low, part.start + high):
                yield chunk
