"""`aitbc client download / share / delete`: fetching and managing a job's results.

These register on the `client` app; importing this module (as `cli.main` does) is what adds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from aitbc.cli.apps import JobIdOption, client_app
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
from aitbc.cli.result_download import fetch_results
from aitbc.domain.clock import isoformat_z
from aitbc.domain.durations import describe_duration, parse_duration
from aitbc.domain.package import CHECKSUM_FILE
from aitbc.sdk.client import Client


@client_app.command()
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
    per_file: Annotated[
        bool,
        typer.Option(
            "--per-file",
            help="Fetch the folder file by file (a request each; files already complete are kept) instead of "
            "in one request: for a very large package on a link that breaks often.",
        ),
    ] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download a job's results (partial ones too) in one request, the streamed zip, unpacked into <job_id>/
    unless --format zip; interrupted downloads resume, every file's sha256 is checked."""
    if format not in ("folder", "zip"):
        fail("--format must be folder or zip")
    if per_file and format == "zip":
        fail("--per-file fetches a folder: leave out --format zip")
    with client(url, api_key) as api:
        fetch_results(api, job_id, output, format, checksum, as_json, per_file)


# -- share and delete ------------------------------------------------------------------------------------


@client_app.command()
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
        table.add_column(column, no_wrap=column in ("Share", "State"))
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


@client_app.command()
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
