"""`aitbc client cancel`: one job by id, or every unfinished job of yours that a filter matches (after showing
how many and asking, unless --yes)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from aitbc.cli.apps import client_app
from aitbc.cli.common import (
    JsonOption,
    KeyOption,
    UrlOption,
    add_text_row,
    as_text,
    client,
    confirm,
    console,
    fail,
    handles_errors,
    print_json,
    styled_status,
)
from aitbc.protocol.cancels import CanceledJob
from aitbc.sdk.client import Client

CANCELABLE = ["pending", "assigned", "running"]


def _cancel_one(api: Client, job_id: str, force: bool, as_json: bool) -> None:
    confirm(force, "cancel", f"Cancel job {job_id}?", f"not canceled: {job_id} goes on")
    result = api.cancel(job_id)
    if as_json:
        print_json(result)
    else:
        console.print(Text.assemble(f"{job_id}: ", styled_status(result.outcome), f" — {result.message}"))
    if result.outcome == "failed":
        raise typer.Exit(1)


def _show(done: list[CanceledJob], as_json: bool) -> None:
    counts = {outcome: sum(1 for job in done if job.outcome == outcome) for outcome in ("canceled", "canceling")}
    failed = len(done) - sum(counts.values())
    if as_json:
        print_json({**counts, "failed": failed, "jobs": [job.model_dump(mode="json") for job in done]})
        return
    table = Table(title=f"{len(done)} jobs")
    for column in ("Job", "Outcome", "Status"):
        table.add_column(column)
    for job in done:
        add_text_row(table, job.job_id, styled_status(job.outcome), styled_status(job.status.value))
    console.print(table)
    console.print(
        as_text(f"{counts['canceled']} canceled, {counts['canceling']} canceling (their miners stop them), ")
        + as_text(f"{failed} had ended meanwhile")
    )


@client_app.command()
@handles_errors
def cancel(
    job_id: Annotated[
        str | None, typer.Option("--job-id", help="The job to cancel (or cancel many with the filters below).")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Cancel your unfinished jobs with this tag.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="… of exactly this name.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="… in these statuses: pending, assigned, running (comma-separated).")
    ] = None,
    from_: Annotated[str | None, typer.Option("--from", help="… created from this date (2026-01-01).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="… created up to this date, inclusive.")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Cancel every unfinished job of yours (needed when no filter is given).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", "--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a job, or all your unfinished jobs a filter matches: queued ones at once, running ones are stopped
    by their miners (partial results are kept)."""
    filtered = any(value is not None for value in (tag, name, status, from_, to))
    if job_id is not None:
        if filtered or all_:
            fail("--job-id cancels one job: leave out --tag, --name, --status, --from, --to and --all", 2)
        with client(url, api_key) as api:
            _cancel_one(api, job_id, force, as_json)
        return
    if not filtered and not all_:
        fail("say which jobs: --job-id ID, a filter (--tag, --name, --status, --from, --to), or --all for every one", 2)
    statuses = [part.strip() for part in status.split(",") if part.strip()] if status else []
    if unknown := [each for each in statuses if each not in CANCELABLE]:
        fail(f"--status {unknown[0]!r}: only jobs that are pending, assigned or running can be canceled", 2)
    with client(url, api_key) as api:
        matching = api.list(status=statuses or CANCELABLE, tag=tag, name=name, from_=from_, to=to, limit=1).total
        if matching == 0:
            if as_json:
                _show([], as_json)
            else:
                console.print(as_text("No unfinished job matches: nothing to cancel."))
            return
        confirm(
            force, "cancel", f"Cancel {matching} unfinished job{'s' if matching != 1 else ''}?", "nothing was canceled"
        )
        done: list[CanceledJob] = []
        more = True
        while more:
            result = api.cancel_matching(status=statuses, tag=tag, name=name, from_=from_, to=to, all=all_)
            done.extend(result.jobs)
            more = result.more and bool(result.jobs)
    _show(done, as_json)
