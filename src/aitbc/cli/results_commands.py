"""`aitbc client download / logs / verify / share / delete`: fetching, checking and managing a job's results.

These register on the `client` app; importing this module (as `cli.main` does) is what adds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
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
    confirm,
    console,
    errors,
    fail,
    handles_errors,
    print_json,
)
from aitbc.cli.verify_command import HASH_CHUNK, receipt_file, sha256_file
from aitbc.domain.clock import isoformat_z
from aitbc.domain.durations import describe_duration, parse_duration
from aitbc.domain.manifest import check_package_path
from aitbc.domain.package import CHECKSUM_FILE, parse_checksum_file
from aitbc.protocol.results import ResultPackageView
from aitbc.sdk.client import Client
from aitbc.sdk.downloads import file_path


def _inside(root: Path, relative: str) -> Path:
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


def _progress(as_json: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=errors,
        disable=as_json,
    )


def _save_receipt(api: Client, job_id: str, folder: Path) -> Path | None:
    try:
        receipt = api.receipt(job_id)
    except Exception as error:
        errors.print(Text.assemble(as_text("No receipt saved:", "yellow"), f" {error}"), highlight=False)
        return None
    path = receipt_file(folder, job_id)
    path.write_text(json.dumps(receipt.model_dump(mode="json"), indent=2) + "\n")
    return path


def _download_folder(
    api: Client, listing: ResultPackageView, output: Path, checksum: bool, progress: Progress
) -> tuple[Path, int]:
    root = output / listing.job_id
    root.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(listing.job_id, total=listing.total_bytes)
    finished = 0
    for item in listing.files:
        target = _inside(root, item.path)
        if target.is_file() and target.stat().st_size == item.size and sha256_file(target) == item.sha256:
            finished += item.size
            progress.update(task, completed=finished)
            continue
        base = finished

        def advance(done: int, base: int = base) -> None:
            progress.update(task, completed=base + done)

        api.download_file(listing.job_id, item.path, target, item.sha256, progress=advance)
        finished += item.size
    if checksum:
        api.download(file_path(listing.job_id, CHECKSUM_FILE), root / CHECKSUM_FILE)
        listed = parse_checksum_file((root / CHECKSUM_FILE).read_text())
        if listed != {f.path: f.sha256 for f in listing.files}:
            fail(f"the coordinator's {CHECKSUM_FILE} does not match the package listing")
    return root, listing.total_bytes


@contextlib.contextmanager
def _writing(output: Path) -> Iterator[None]:
    """A file that cannot be written is a one-line error, not a traceback."""
    try:
        yield
    except OSError as error:
        fail(f"cannot write the results under {output}: {error}")


def _check_zip(path: Path, listing: ResultPackageView) -> None:
    """Every file of the listing is in the zip with its sha256 (read back in chunks, never whole)."""
    with zipfile.ZipFile(path) as archive:
        for item in listing.files:
            digest = hashlib.sha256()
            with archive.open(f"{listing.job_id}/{item.path}") as entry:
                while chunk := entry.read(HASH_CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != item.sha256:
                fail(f"{path}: {item.path} does not have the sha256 the package lists")


@app.command()
@handles_errors
def download(
    job_id: JobIdOption,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write <job_id>/ (or <job_id>.zip) into.")
    ] = Path(),
    checksum: Annotated[
        bool, typer.Option("--checksum", help=f"Also write <job_id>/{CHECKSUM_FILE} for `sha256sum -c`.")
    ] = False,
    format: Annotated[str, typer.Option("--format", help="folder (default) or zip (keep the zip).")] = "folder",
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download a job's results (partial ones too); interrupted downloads resume, every file's sha256 is checked."""
    if format not in ("folder", "zip"):
        fail("--format must be folder or zip")
    output = output.expanduser()
    with client(url, api_key) as api:
        listing = api.results(job_id)
        output.mkdir(parents=True, exist_ok=True)
        with _progress(as_json) as progress, _writing(output):
            if format == "zip":
                path = output / f"{listing.job_id}.zip"
                task = progress.add_task(path.name, total=listing.zip_bytes)
                api.download_zip(listing.job_id, path, progress=lambda done: progress.update(task, completed=done))
                _check_zip(path, listing)
                size = listing.zip_bytes
            else:
                path, size = _download_folder(api, listing, output, checksum, progress)
        saved_receipt = _save_receipt(api, listing.job_id, output)
    summary = {
        "job_id": listing.job_id,
        "path": str(path),
        "format": format,
        "files": len(listing.files),
        "bytes": size,
        "partial": listing.partial,
        "checksum_file": str(path / CHECKSUM_FILE) if checksum and format == "folder" else None,
        "receipt_file": str(saved_receipt) if saved_receipt else None,
    }
    if as_json:
        print_json(summary)
        return
    partial = as_text(" (partial results)", "yellow") if listing.partial else ""
    console.print(
        Text.assemble(f"Downloaded {len(listing.files)} files ({size} bytes) to ", as_text(path, "bold"), partial)
    )
    if summary["checksum_file"]:
        console.print(as_text(f"Checksums: {summary['checksum_file']} (cd {path} && sha256sum -c {CHECKSUM_FILE})"))


def _echo_line(stream: str, line: str, as_json: bool, seq: int | None = None) -> None:
    if as_json:
        typer.echo(json.dumps({"seq": seq, "stream": stream, "line": line}, ensure_ascii=False))
    else:
        typer.echo(line, err=stream == "stderr")


@app.command()
@handles_errors
def logs(
    job_id: JobIdOption,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a job's logs: live lines while it runs (with --follow, until it ends), then the package's logs."""
    with client(url, api_key) as api:
        job = api.get(job_id)
        if job.status.is_terminal and job.results == "available":
            paths = {f.path for f in api.results(job_id).files}
            packaged = [name for name in ("stdout", "stderr") if f"logs/{name}.log" in paths]
            if packaged:
                for name in packaged:
                    for line in _lines(api.iter_bytes(file_path(job_id, f"logs/{name}.log"))):
                        _echo_line(name, line, as_json)
                return
        sent = api.logs(job_id)
        for item in sent.lines:
            _echo_line(item.stream, item.line, as_json, item.seq)
        while sent.more:
            sent = api.logs(job_id, after=sent.last_seq)
            for item in sent.lines:
                _echo_line(item.stream, item.line, as_json, item.seq)
        if not follow or sent.status.is_terminal:
            return
        for event in api.events(job_id=job_id, since=sent.last_seq):
            if event.kind == "log":
                for item in event.data.get("lines", []):
                    _echo_line(str(item.get("stream", "stdout")), str(item.get("line", "")), as_json, event.seq)
            elif event.kind == "status" and event.status.is_terminal:
                break


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Text lines of a byte stream, without holding more than one line."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


# -- share and delete ------------------------------------------------------------------------------------


@app.command()
@handles_errors
def share(
    job_id: JobIdOption,
    expires: Annotated[
        str | None, typer.Option("--expires", help="How long the link works: 30m, 12h, 7d (default 7d).")
    ] = None,
    revoke: Annotated[str | None, typer.Option("--revoke", help="Revoke this share link (share_…).")] = None,
    revoke_all: Annotated[bool, typer.Option("--revoke-all", help="Revoke every link to this job.")] = False,
    list_links: Annotated[bool, typer.Option("--list", help="List this job's links.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a link that downloads the results with no API key; list or revoke links.

    A link lasts --expires (default 7d) but never outlives the results.
    """
    if sum([revoke is not None, revoke_all, list_links]) > 1 or (expires and (revoke or revoke_all or list_links)):
        fail("give one of: --expires (make a link), --revoke SHARE_ID, --revoke-all, --list")
    seconds = parse_duration(expires) if expires else None
    with client(url, api_key) as api:
        if revoke is not None:
            revoked = api.revoke_share(job_id, revoke)
            _out(as_json, revoked, f"Revoked {revoked.share_id}.")
        elif revoke_all:
            result = api.revoke_shares(job_id)
            _out(as_json, result, f"Revoked {result.revoked} share link(s) of {job_id}.")
        elif list_links:
            _list_shares(api, job_id, as_json)
        else:
            made = api.create_share(job_id, seconds)
            if as_json:
                print_json(made)
                return
            typer.echo(made.url)
            note = " (capped: the results expire then)" if made.capped else ""
            errors.print(f"{made.share_id}: works until {isoformat_z(made.expires_at)}{note}", highlight=False)
            if seconds:
                errors.print(f"Requested {describe_duration(seconds)}.", highlight=False)


def _out(as_json: bool, value: Any, message: str) -> None:
    if as_json:
        print_json(value)
    else:
        console.print(as_text(message))


def _list_shares(api: Client, job_id: str, as_json: bool) -> None:
    listed = api.list_shares(job_id)
    if as_json:
        print_json(listed)
        return
    table = Table(title=f"Share links of {job_id}")
    for column in ("Share", "State", "Created", "Expires", "Downloads", "Last download"):
        table.add_column(column)
    style = {"active": "green", "expired": "dim", "revoked": "red"}
    for item in listed.shares:
        add_text_row(
            table,
            item.share_id,
            as_text(item.state, style[item.state]),
            isoformat_z(item.created_at) or "-",
            isoformat_z(item.expires_at) or "-",
            str(item.download_count),
            isoformat_z(item.last_download_at) or "-",
        )
    console.print(table)


@app.command()
@handles_errors
def delete(
    job_id: JobIdOption,
    force: Annotated[bool, typer.Option("--force", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a finished job's result files and revoke its share links; the job stays in your history."""
    confirm(force, "delete", f"Delete the results of job {job_id}? This cannot be undone.", "nothing was deleted")
    with client(url, api_key) as api:
        deleted = api.delete_results(job_id)
    _out(as_json, deleted, f"{job_id}: results {deleted.results} — {deleted.message}")
