"""`aitbc client verify`: check a job's results end to end, offline if need be, against the coordinator key
pinned in the CLI profile on first use.

The chain: the pinned key signs the receipt; the receipt names the manifest's hash, the miner's key and its
signature; the manifest names every file's size and sha256. Each link is a check of its own, so a failure
names the link (the file, or the signature) that broke.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aitbc.cli.client_commands import JobIdOption, app
from aitbc.cli.common import (
    JsonOption,
    KeyOption,
    UrlOption,
    add_text_row,
    as_text,
    client,
    console,
    errors,
    fail,
    handles_errors,
    print_json,
)
from aitbc.domain.clock import isoformat_z
from aitbc.domain.package import CHECKSUM_FILE, parse_checksum_file
from aitbc.domain.receipts import Check, FoundFile, check_files, check_receipt, key_id
from aitbc.protocol.results import ReceiptView
from aitbc.sdk.client import Client
from aitbc.sdk.config import read_profile, write_profile
from aitbc.sdk.downloads import file_path

HASH_CHUNK = 1024 * 1024
PINNED_KEYS = "coordinator_keys"


def receipt_file(folder: Path, job_id: str) -> Path:
    """Where `download` keeps the receipt: beside the package, not inside it."""
    return folder / f"{job_id}.receipt.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _pinned_key(api: Client, trust_new_key: bool) -> tuple[str, list[Check]]:
    """The coordinator key to check receipts with: pinned in the profile on first use; if the coordinator
    now shows another key, warn loudly and keep checking with the pinned one (unless told to trust it)."""
    served = api.coordinator_key()
    pins: dict[str, Any] = dict(read_profile().get(PINNED_KEYS) or {})
    pinned = pins.get(api.url)
    record = {"public_key": served.public_key, "key_id": served.key_id, "pinned_at": isoformat_z(datetime.now(UTC))}
    if pinned is None:
        write_profile({PINNED_KEYS: {**pins, api.url: record}})
        return served.public_key, [Check("coordinator key", True, f"{served.key_id} pinned for {api.url} (first use)")]
    if pinned["public_key"] == served.public_key:
        return served.public_key, [Check("coordinator key", True, f"{served.key_id} matches the key pinned")]
    errors.print(
        Panel(
            f"The coordinator at {api.url} now presents key {served.key_id},\n"
            f"but key {pinned.get('key_id')} was pinned on {pinned.get('pinned_at')}.\n"
            "Someone may be impersonating it, or its key was replaced.\n"
            + (
                "Trusting the new key as asked (--trust-new-key)."
                if trust_new_key
                else "Receipts are checked against the pinned key. If the change is expected, run again with "
                "--trust-new-key."
            ),
            title="[bold red]WARNING: THE COORDINATOR'S KEY HAS CHANGED",
            border_style="bold red",
        )
    )
    if trust_new_key:
        write_profile({PINNED_KEYS: {**pins, api.url: record}})
        return served.public_key, [Check("coordinator key", True, f"{served.key_id} trusted anew (it changed)")]
    return str(pinned["public_key"]), [Check("coordinator key", False, f"changed from {pinned.get('key_id')}")]


def _offline_key(profile_url: str | None) -> str:
    pins: dict[str, Any] = dict(read_profile().get(PINNED_KEYS) or {})
    if profile_url and profile_url.rstrip("/") in pins:
        return str(pins[profile_url.rstrip("/")]["public_key"])
    if len(pins) == 1:
        return str(next(iter(pins.values()))["public_key"])
    fail("--offline needs a coordinator key pinned in the profile (run verify online once), and --url if several are")


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
            digest = hashlib.sha256()
            with archive.open(info) as entry:
                while chunk := entry.read(HASH_CHUNK):
                    digest.update(chunk)
            if name == CHECKSUM_FILE:
                checksums = archive.read(info).decode(errors="replace")
                continue
            found[name] = FoundFile(info.file_size, digest.hexdigest())
    return found, checksums


def _served_files(api: Client, receipt: ReceiptView) -> dict[str, FoundFile]:
    found: dict[str, FoundFile] = {}
    for entry in receipt.manifest.get("files", []):
        digest = hashlib.sha256()
        size = 0
        for chunk in api.iter_bytes(file_path(receipt.job_id, str(entry["path"]))):
            digest.update(chunk)
            size += len(chunk)
        found[str(entry["path"])] = FoundFile(size, digest.hexdigest())
    return found


def _copy_checks(receipt: ReceiptView, location: Path) -> list[Check]:
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


def _find_receipt(receipt_path: Path | None, location: Path | None, job_id: str) -> ReceiptView | None:
    candidates = [receipt_path] if receipt_path else []
    if location is not None:
        candidates += [receipt_file(location, job_id), receipt_file(location.parent, job_id)]
        if location.suffix == ".zip":
            candidates.append(location.with_name(f"{job_id}.receipt.json"))
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return ReceiptView.model_validate_json(candidate.read_text())
    if receipt_path is not None:
        fail(f"no receipt at {receipt_path}")
    return None


@app.command()
@handles_errors
def verify(
    job_id: JobIdOption,
    path: Annotated[
        Path | None, typer.Option("--path", help="A downloaded copy: the <job_id> folder, its parent, or the zip.")
    ] = None,
    receipt_path: Annotated[
        Path | None, typer.Option("--receipt", help="A saved receipt (default: <job_id>.receipt.json beside --path).")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Use only the pinned key and local files.")] = False,
    trust_new_key: Annotated[
        bool, typer.Option("--trust-new-key", help="Accept and pin a coordinator key that changed.")
    ] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check a job's results end to end; exit 0 only if the receipt, both signatures and every file hold.

    The coordinator's key is pinned in the CLI profile on first use (a later change is a loud warning and a
    failure); files are those of --path (the <job_id> folder, its parent or the zip), else streamed from the
    coordinator.
    """
    location = path.expanduser() if path else None
    receipt = _find_receipt(receipt_path, location, job_id)
    checks: list[Check] = []
    if offline:
        if receipt is None or location is None:
            fail("--offline needs --path and a saved receipt (`aitbc client download` saves one)")
        public_key = _offline_key(url or os.environ.get("AITBC_URL") or read_profile().get("url"))
        checks.append(Check("coordinator key", True, f"{key_id(public_key)} pinned (offline)"))
        checks += _run_checks(receipt, public_key, job_id)
        checks += _copy_checks(receipt, location)
    else:
        with client(url, api_key) as api:
            public_key, key_checks = _pinned_key(api, trust_new_key)
            checks += key_checks
            receipt = receipt or api.receipt(job_id)
            checks += _run_checks(receipt, public_key, job_id)
            if location is not None:
                checks += _copy_checks(receipt, location)
            else:
                checks += check_files(receipt.manifest, _served_files(api, receipt), frozenset())
    _report(checks, job_id, as_json)


def _run_checks(receipt: ReceiptView, public_key: str, job_id: str) -> list[Check]:
    named = receipt.receipt.get("job_id") == job_id == receipt.job_id
    checks = [Check("receipt names the job", named, f"receipt for {receipt.receipt.get('job_id')}")]
    return checks + check_receipt(receipt.receipt, receipt.signature, public_key, receipt.manifest)


def _report(checks: list[Check], job_id: str, as_json: bool) -> None:
    failed = [check for check in checks if not check.ok]
    if as_json:
        print_json(
            {
                "job_id": job_id,
                "ok": not failed,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
            }
        )
    else:
        table = Table(show_header=False, box=None, pad_edge=False)
        for check in checks:
            mark = as_text("✓", "green") if check.ok else as_text("✗", "bold red")
            add_text_row(table, mark, check.name, check.detail)
        console.print(table)
        if failed:
            errors.print(
                Text.assemble(
                    as_text("Verification FAILED:", "bold red"),
                    " ",
                    "; ".join(f"{c.name} ({c.detail})" for c in failed),
                ),
                highlight=False,
            )
        else:
            console.print(
                Text.assemble(
                    as_text("Verified:", "bold green"), f" {job_id} — receipt, both signatures and every file hold."
                )
            )
    if failed:
        raise typer.Exit(1)
