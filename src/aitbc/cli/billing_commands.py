"""Money and history: `aitbc client balance|stats|export|retry` and `aitbc billing list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from aitbc.cli.apps import JobIdOption, client_app
from aitbc.cli.common import (
    JsonOption,
    KeyOption,
    UrlOption,
    add_text_row,
    as_text,
    client,
    console,
    fail,
    handles_errors,
    print_json,
    short_time,
)
from aitbc.domain.money import display as money

billing_app = typer.Typer(help="Your ledger (credits, holds, charges), spending limit and alert.", no_args_is_help=True)


@client_app.command()
@handles_errors
def balance(url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Show your balance: what is available for new jobs and what running jobs hold."""
    with client(url, api_key) as api:
        found = api.balance()
    if as_json:
        print_json(found)
        return
    console.print(Text.assemble("Account ", as_text(found.account, "bold"), f" ({found.plan} plan)"))
    console.print(Text.assemble("  available: ", as_text(money(found.available), "bold green"), " AITBC"))
    console.print(f"  held by unfinished jobs: {money(found.held)} AITBC")


@client_app.command()
@handles_errors
def stats(
    days: Annotated[int | None, typer.Option("--days", min=1, help="Only jobs of the last N days.")] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Totals of your jobs: submitted, success rate, average completion time, total spent."""
    with client(url, api_key) as api:
        found = api.stats(days)
    if as_json:
        print_json(found)
        return
    table = Table(title="Job statistics" + (f" — last {days} days" if days else ""), show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("Total jobs submitted", str(found.total_jobs))
    for status, count in found.by_status.items():
        if count:
            table.add_row(f"  {status}", str(count))
    table.add_row("Success rate", f"{found.success_rate:.1%}" if found.success_rate is not None else "-")
    average = found.average_completion_seconds
    table.add_row("Average completion time", f"{average:.1f} s" if average is not None else "-")
    table.add_row("Total spent", f"{money(found.total_spent)} AITBC")
    console.print(table)


@client_app.command()
@handles_errors
def export(
    output: Annotated[Path, typer.Option("--output", help="File to write.")],
    format: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
    status: Annotated[str | None, typer.Option("--status", help="Only jobs in this status.")] = None,
    days: Annotated[int | None, typer.Option("--days", min=1, help="Only jobs of the last N days.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="From this date (2026-01-01).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Up to this date, inclusive.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only jobs with this tag.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only jobs of exactly this name.")] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Export your job history (names and tags included) to a JSON or CSV file, streamed."""
    if format not in ("json", "csv"):
        fail("--format must be json or csv")
    partial = output.with_name(output.name + ".partial")
    written = 0
    progress = Progress(
        TextColumn("exporting"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True
    )
    with client(url, api_key) as api, progress, partial.open("wb") as handle:
        task = progress.add_task("export", total=None)
        for chunk in api.export(format, [status] if status else None, days, from_, to, tag, name):
            handle.write(chunk)
            written += len(chunk)
            progress.update(task, completed=written)
    partial.replace(output)
    console.print(as_text(f"Wrote {written} bytes to {output}"))


@client_app.command()
@handles_errors
def retry(job_id: JobIdOption, url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Submit a failed or canceled job again, as a new job linked to the old one; print the new id."""
    with client(url, api_key) as api:
        job = api.retry(job_id)
    if as_json:
        print_json(job)
    else:
        typer.echo(job.job_id)


@billing_app.command("list")
@handles_errors
def list_entries(
    from_: Annotated[str | None, typer.Option("--from", help="From this date (2026-01-01).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Up to this date, inclusive.")] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List your ledger: credits granted, holds taken at submit, releases and payouts when jobs end."""
    with client(url, api_key) as api:
        entries = list(api.iter_ledger(from_, to))
    if as_json:
        print_json(entries)
        return
    table = Table(title=f"{len(entries)} ledger entries")
    for column in ("When", "Kind", "Amount (AITBC)", "Job", "Memo"):
        table.add_column(column, justify="right" if column.startswith("Amount") else "left", no_wrap=column == "Job")
    for entry in entries:
        shown = money(entry.amount)
        amount = as_text(f"+{shown}", "green") if entry.amount > 0 else as_text(shown, "red")
        add_text_row(
            table,
            short_time(entry.created_at.isoformat().replace("+00:00", "Z")),
            entry.kind,
            amount,
            entry.job_id or "-",
            entry.memo,
        )
    console.print(table)
