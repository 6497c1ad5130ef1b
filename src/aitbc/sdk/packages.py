"""Download a job's whole result package, safely: as a <job_id>/ folder or as the zip, with the signed receipt
saved beside it. Either way the package comes in one request, the streamed zip (resumable with Range), so a
package of many files costs three requests (listing, zip, receipt), not one per file against the plan's rate
limit; the folder is the zip unpacked, every file's sha256 checked as it is written, names that would land
outside the folder or through a symlink refused. `per_file` fetches the files one by one instead (each
resumable, files already complete kept), for a very large package on a link that breaks often."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from aitbc.domain.digests import HASH_CHUNK, Sha256, sha256_chunks, sha256_file
from aitbc.domain.errors import InvalidInput
from aitbc.domain.manifest import check_package_path
from aitbc.domain.package import CHECKSUM_FILE, parse_checksum_file
from aitbc.protocol.results import ReceiptView, ResultPackageView
from aitbc.sdk import calls
from aitbc.sdk.downloads import DownloadCorrupted, file_path, zip_path
from aitbc.sdk.steps import Fetch, Local, Steps
from aitbc.sdk.verification import receipt_file

FORMATS = ("folder", "zip")
# (bytes done, bytes in all) of the whole package.
PackageProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class DownloadedPackage:
    job_id: str
    path: Path
    format: str
    files: int
    bytes: int
    partial: bool
    checksum_file: Path | None
    receipt_file: Path | None
    receipt_error: str | None


def inside(root: Path, relative: str) -> Path:
    """The local path of a package file; refuses names that would land outside `root` (zip-slip) or go
    through a symlink."""
    target = root.joinpath(*check_package_path(relative).split("/"))
    for parent in [target, *target.parents]:
        if parent == root:
            break
        if parent.is_symlink():
            raise ValueError(f"refusing to write {relative}: {parent} is a symbolic link")
    if not target.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write {relative}: it would land outside {root}")
    return target


def check_zip(path: Path, listing: ResultPackageView) -> None:
    """Every file of the listing is in the zip with its sha256 (read back in chunks, never whole)."""
    with zipfile.ZipFile(path) as archive:
        for item in listing.files:
            with archive.open(f"{listing.job_id}/{item.path}") as entry:
                _, sha256 = sha256_chunks(iter(lambda: entry.read(HASH_CHUNK), b""))
            if sha256 != item.sha256:
                raise DownloadCorrupted(f"{path}: {item.path} does not have the sha256 the package lists")


def _complete(target: Path, size: int, sha256: str) -> bool:
    return target.is_file() and target.stat().st_size == size and sha256_file(target) == sha256


def _check_checksum_file(root: Path, listing: ResultPackageView) -> None:
    listed = parse_checksum_file((root / CHECKSUM_FILE).read_text())
    if listed != {f.path: f.sha256 for f in listing.files}:
        raise DownloadCorrupted(f"the coordinator's {CHECKSUM_FILE} does not match the package listing")


def _write_receipt(receipt: ReceiptView, folder: Path) -> Path:
    path = receipt_file(folder, receipt.job_id)
    path.write_text(json.dumps(receipt.model_dump(mode="json"), indent=2) + "\n")
    return path


def _unpack(archive: Path, listing: ResultPackageView, root: Path, checksum: bool) -> None:
    """The zip's files into `root`, each checked against the listing's sha256 as it is written (through a
    `.part` file, so a file in place is always whole), then the zip removed."""
    root.mkdir(parents=True, exist_ok=True)
    wanted = [(item.path, item.sha256) for item in listing.files]
    with zipfile.ZipFile(archive) as opened:
        for path, sha256 in wanted:
            target = inside(root, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            digest = Sha256()
            with opened.open(f"{listing.job_id}/{path}") as entry, part.open("wb") as handle:
                while chunk := entry.read(HASH_CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
            if digest.hexdigest() != sha256:
                part.unlink()
                raise DownloadCorrupted(f"{archive}: {path} does not have the sha256 the package lists")
            part.replace(target)
        if checksum:
            (root / CHECKSUM_FILE).write_bytes(opened.read(f"{listing.job_id}/{CHECKSUM_FILE}"))
    if checksum:
        _check_checksum_file(root, listing)
    archive.unlink()


def _zip_steps(
    listing: ResultPackageView, output: Path, checksum: bool, progress: PackageProgress | None
) -> Steps[Path]:
    """The folder by way of the zip: one request for every file, unpacked next to where it arrived."""
    archive = output / f".{listing.job_id}.download.zip"
    total = listing.zip_bytes
    zip_progress = None if progress is None else (lambda done: progress(done, total))
    yield Fetch(zip_path(listing.job_id), archive, progress=zip_progress)
    root = output / listing.job_id
    yield Local(partial(_unpack, archive, listing, root, checksum))
    return root


def _folder_steps(
    listing: ResultPackageView, output: Path, checksum: bool, progress: PackageProgress | None
) -> Steps[Path]:
    root = output / listing.job_id
    yield Local(partial(root.mkdir, parents=True, exist_ok=True))
    finished = 0
    for item in listing.files:
        target = inside(root, item.path)
        if (yield Local(partial(_complete, target, item.size, item.sha256))):
            finished += item.size
            if progress is not None:
                progress(finished, listing.total_bytes)
            continue

        def advance(done: int, base: int = finished) -> None:
            if progress is not None:
                progress(base + done, listing.total_bytes)

        yield Fetch(file_path(listing.job_id, item.path), target, item.sha256, advance)
        finished += item.size
    if checksum:
        yield Fetch(file_path(listing.job_id, CHECKSUM_FILE), root / CHECKSUM_FILE)
        yield Local(partial(_check_checksum_file, root, listing))
    return root


def download_steps(
    job_id: str,
    output: Path,
    format: str,
    checksum: bool,
    progress: PackageProgress | None,
    per_file: bool = False,
) -> Steps[DownloadedPackage]:
    """The package of `job_id` (partial results too) into `output`, then its receipt beside it."""
    if format not in FORMATS:
        raise InvalidInput("format must be folder or zip")
    listing: ResultPackageView = yield calls.result_package(job_id)
    yield Local(partial(output.mkdir, parents=True, exist_ok=True))
    if format == "zip":
        path = output / f"{listing.job_id}.zip"
        total = listing.zip_bytes
        zip_progress = None if progress is None else (lambda done: progress(done, total))
        yield Fetch(zip_path(listing.job_id), path, progress=zip_progress)
        yield Local(partial(check_zip, path, listing))
    elif per_file:
        path = yield from _folder_steps(listing, output, checksum, progress)
        total = listing.total_bytes
    else:
        path = yield from _zip_steps(listing, output, checksum, progress)
        total = listing.total_bytes
    saved: Path | None = None
    error: str | None = None
    try:
        receipt: ReceiptView = yield calls.receipt(listing.job_id)
    except Exception as failed:  # a package is still worth having without its receipt
        error = str(failed)
    else:
        saved = yield Local(partial(_write_receipt, receipt, output))
    return DownloadedPackage(
        job_id=listing.job_id,
        path=path,
        format=format,
        files=len(listing.files),
        bytes=total,
        partial=listing.partial,
        checksum_file=path / CHECKSUM_FILE if checksum and format == "folder" else None,
        receipt_file=saved,
        receipt_error=error,
    )
