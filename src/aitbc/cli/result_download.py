"""Fetch a job's results with a progress bar and say what was saved: what `download` and `submit --output` do.
The download itself (resume, sha256 checks, zip-slip guard, receipt) is the SDK's `download_results`."""

from __future__ import annotations

from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from aitbc.cli.common import as_text, console, errors, fail, print_json
from aitbc.domain.package import CHECKSUM_FILE
from aitbc.sdk.client import Client
from aitbc.sdk.packages import DownloadedPackage


def _bar(as_json: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=errors,
        disable=as_json,
    )


def fetch_results(
    api: Client, job_id: str, output: Path, format: str, checksum: bool, as_json: bool, per_file: bool = False
) -> None:
    """Download the package of `job_id` into `output` (a <job_id>/ folder, or <job_id>.zip) and report it: in
    one request (the zip), or with `per_file` a request a file."""
    if format not in ("folder", "zip"):
        fail("--format must be folder or zip")
    output = output.expanduser()
    name = f"{job_id}.zip" if format == "zip" else job_id
    with _bar(as_json) as bar:
        tasks: list[TaskID] = []

        def advance(done: int, total: int) -> None:
            if not tasks:
                tasks.append(bar.add_task(name, total=total))
            bar.update(tasks[0], completed=done)

        try:
            package = api.download_results(
                job_id, output, format=format, checksum=checksum, progress=advance, per_file=per_file
            )
        except OSError as error:
            fail(f"cannot write the results under {output}: {error}")
    _report(package, as_json)


def _report(package: DownloadedPackage, as_json: bool) -> None:
    if package.receipt_error is not None:
        errors.print(
            Text.assemble(as_text("No receipt saved:", "yellow"), f" {package.receipt_error}"), highlight=False
        )
    if as_json:
        print_json(
            {
                "job_id": package.job_id,
                "path": str(package.path),
                "format": package.format,
                "files": package.files,
                "bytes": package.bytes,
                "partial": package.partial,
                "checksum_file": str(package.checksum_file) if package.checksum_file else None,
                "receipt_file": str(package.receipt_file) if package.receipt_file else None,
            }
        )
        return
    partial = as_text(" (partial results)", "yellow") if package.partial else ""
    console.print(
        Text.assemble(
            f"Downloaded {package.files} files ({package.bytes} bytes) to ", as_text(package.path, "bold"), partial
        )
    )
    if package.checksum_file:
        console.print(
            as_text(f"Checksums: {package.checksum_file} (cd {package.path} && sha256sum -c {CHECKSUM_FILE})")
        )
