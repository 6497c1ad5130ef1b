"""Verify a job's results end to end: the pinned coordinator key signs the receipt; the receipt names the
manifest's hash, the miner's key and its signature; the manifest names every file's size and sha256. Each link
is a check of its own, so a failure names the link (the file, or the signature) that broke. The files are
those of a downloaded copy (the <job_id> folder, its parent, or the zip), else streamed from the coordinator."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from aitbc.domain.digests import HASH_CHUNK, sha256_chunks, sha256_file
from aitbc.domain.errors import NotFound
from aitbc.domain.package import CHECKSUM_FILE, parse_checksum_file
from aitbc.domain.receipts import Check, FoundFile, check_files, check_receipt, key_id
from aitbc.protocol.results import ReceiptView
from aitbc.sdk import calls
from aitbc.sdk.downloads import file_path
from aitbc.sdk.pinning import KeyChange, PinnedKey, pin_key
from aitbc.sdk.steps import Digest, Local, Steps


@dataclass(frozen=True)
class Verification:
    job_id: str
    checks: list[Check] = field(default_factory=list)
    key_change: KeyChange | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]


def receipt_file(folder: Path, job_id: str) -> Path:
    """Where a package download keeps the receipt: beside the package, not inside it."""
    return folder / f"{job_id}.receipt.json"


def find_receipt(job_id: str, location: Path | None, receipt_path: Path | None = None) -> ReceiptView | None:
    """The receipt at `receipt_path`, else one saved beside the copy at `location`; None if there is none."""
    candidates = [receipt_path] if receipt_path else []
    if location is not None:
        candidates += [receipt_file(location, job_id), receipt_file(location.parent, job_id)]
        if location.suffix == ".zip":
            candidates.append(location.with_name(f"{job_id}.receipt.json"))
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return ReceiptView.model_validate_json(candidate.read_text())
    if receipt_path is not None:
        raise NotFound(f"no receipt at {receipt_path}")
    return None


def receipt_checks(receipt: ReceiptView, public_key: str, job_id: str) -> list[Check]:
    named = receipt.receipt.get("job_id") == job_id == receipt.job_id
    checks = [Check("receipt names the job", named, f"receipt for {receipt.receipt.get('job_id')}")]
    return checks + check_receipt(receipt.receipt, receipt.signature, public_key, receipt.manifest)


def _local_files(root: Path) -> dict[str, FoundFile]:
    found: dict[str, FoundFile] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[relative] = FoundFile(-1, "symbolic link")
        elif path.is_file():
            found[relative] = FoundFile(path.stat().st_size, sha256_file(path))
    return found


def _zip_files(path: Path, job_id: str) -> tuple[dict[str, FoundFile], str | None]:
    found: dict[str, FoundFile] = {}
    checksums = None
    prefix = f"{job_id}/"
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename[len(prefix) :] if info.filename.startswith(prefix) else "../" + info.filename
            if name == CHECKSUM_FILE:
                checksums = archive.read(info).decode(errors="replace")
                continue
            with archive.open(info) as entry:
                _, sha256 = sha256_chunks(iter(lambda: entry.read(HASH_CHUNK), b""))
            found[name] = FoundFile(info.file_size, sha256)
    return found, checksums


def copy_checks(receipt: ReceiptView, location: Path) -> list[Check]:
    """The files of a downloaded copy (a folder, its parent, or the zip) against the manifest."""
    folder = location / receipt.job_id if (location / receipt.job_id).is_dir() else location
    checksums: str | None = None
    if location.is_file():
        found, checksums = _zip_files(location, receipt.job_id)
    elif folder.is_dir():
        found = _local_files(folder)
        checksum_path = folder / CHECKSUM_FILE
        if checksum_path.is_file():
            checksums = checksum_path.read_text(errors="replace")
    else:
        return [Check("downloaded copy", False, f"{location} is neither a folder nor a zip")]
    found.pop(CHECKSUM_FILE, None)
    checks = check_files(receipt.manifest, found, frozenset())
    if checksums is not None:
        expected = {str(f["path"]): str(f["sha256"]) for f in receipt.manifest.get("files", [])}
        try:
            same = parse_checksum_file(checksums) == expected
        except ValueError:
            same = False
        checks.append(Check(f"file {CHECKSUM_FILE}", same, "lists the manifest's files" if same else "differs"))
    return checks


def verify_offline(job_id: str, location: Path, receipt: ReceiptView, public_key: str) -> Verification:
    """A copy and its saved receipt against a pinned key, with no coordinator to ask."""
    checks = [Check("coordinator key", True, f"{key_id(public_key)} pinned (offline)")]
    checks += receipt_checks(receipt, public_key, job_id)
    return Verification(job_id, checks + copy_checks(receipt, location))


def verify_steps(
    url: str, job_id: str, location: Path | None, receipt: ReceiptView | None, trust_new_key: bool
) -> Steps[Verification]:
    """Online: the coordinator's key (pinned on first use), its receipt unless one is given or saved beside the
    copy, then the copy's files, or the coordinator's own files streamed and hashed."""
    served = yield calls.coordinator_key()
    pinned: PinnedKey = yield Local(partial(pin_key, url, served, trust_new_key))
    if receipt is None and location is not None:
        receipt = yield Local(partial(find_receipt, job_id, location))
    if receipt is None:
        receipt = yield calls.receipt(job_id)
    checks = [pinned.check, *receipt_checks(receipt, pinned.public_key, job_id)]
    if location is not None:
        checks += yield Local(partial(copy_checks, receipt, location))
    else:
        found: dict[str, FoundFile] = {}
        for entry in receipt.manifest.get("files", []):
            size, sha256 = yield Digest(file_path(receipt.job_id, str(entry["path"])))
            found[str(entry["path"])] = FoundFile(size, sha256)
        checks += check_files(receipt.manifest, found, frozenset())
    return Verification(job_id, checks, pinned.change)
