"""How the CLI shows a job: the status table of `status`, the full record of `get`, and the live progress of
`watch` and `submit --output`, with the exit code a finished job gives."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from aitbc.cli.common import (
    add_text_row,
    as_text,
    console,
    errors,
    print_json,
    print_json_line,
    short_time,
    styled_status,
)
from aitbc.cli.receipt_command import time_spent
from aitbc.domain.job import JobStatus, split_stderr_tail
from aitbc.domain.money import display as money
from aitbc.protocol.jobs import EventMessage, JobView, SubmittedJobView
from aitbc.sdk.calls import SubmitOptions
from aitbc.sdk.client import Client
from aitbc.sdk.downloads import ResultHead
from aitbc.sdk.errors import JobNotCompleted
from aitbc.sdk.resuming import DEFAULT_RECONNECT_SECONDS

PREVIEW_LINES = 10
EXIT_FAILED = 1
EXIT_CANCELED = 2
WAITING_REFRESH_SECONDS = 2.0  # how often `watch` reads a pending job's `waiting_for` again while no event comes
ReconnectOption = Annotated[
    float,
    typer.Option(
        "--reconnect-timeout",
        min=0,
        help="After a dropped connection, keep trying to reconnect this many seconds, then exit 3.",
    ),
]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def when(value: datetime | None) -> str:
    return short_time(_iso(value))


def _presets(job: JobView) -> list[tuple[str, str]]:
    """The template and workflow the job's settings came from, those it has."""
    named = (("template", job.template), ("workflow", job.workflow))
    return [(kind, name) for kind, name in named if name]


def _text(head: ResultHead) -> str | None:
    """The bytes as UTF-8 text (a character cut at the end of a partial read dropped), or None if binary."""
    for cut in range(0 if head.complete else 4):
        try:
            return head.data[: len(head.data) - cut].decode()
        except UnicodeDecodeError:
            continue
    try:
        return head.data.decode()
    except UnicodeDecodeError:
        return None


def result_preview(head: ResultHead) -> Text:
    """The start of result.txt, at most `PREVIEW_LINES` lines; a binary one is only measured."""
    text = _text(head)
    if text is None:
        return as_text(f"{head.size} bytes of binary data: aitbc client download", "dim")
    lines = text.splitlines()
    shown = "\n".join(lines[:PREVIEW_LINES])
    if not head.complete or len(lines) > PREVIEW_LINES:
        return Text.assemble(as_text(shown), as_text(f"\n… ({head.size} bytes in all: aitbc client download)", "dim"))
    return as_text(shown) if shown else as_text("(empty)", "dim")


def status_table(job: JobView, head: ResultHead | None = None) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("Job", job.job_id),
        *([("Name", job.name)] if job.name else []),
        *([("Tags", " ".join(job.tags))] if job.tags else []),
        ("Status", styled_status(job.status.value)),
        ("Progress", f"{job.progress}%" + (f" — {job.progress_message}" if job.progress_message else "")),
        ("Type / model", f"{job.type} / {job.model or '-'}"),
        ("Priority", job.priority.value),
        ("Miner", (job.miner_id or "-") + (f" (pinned to {pin})" if (pin := job.requirements.miner_id) else "")),
        ("Created", when(job.created_at)),
        ("Started", when(job.started_at)),
    ]
    if job.status.is_terminal:
        rows.append(("Ended" if job.status.value != "completed" else "Completed", when(job.completed_at)))
    else:
        rows.append(("ETA", when(job.estimated_completion)))
    if job.waiting_for:
        rows.append(("Waiting for", as_text(job.waiting_for, "yellow")))
    if job.cost is not None:
        rows.append(("Cost", f"{money(job.cost)} AITBC ({job.billed_seconds} s)"))
    else:
        rows.append(("Estimate", f"{money(job.estimated_cost)} AITBC (at most {money(job.max_cost)})"))
    if job.results != "none":
        expiry = f", until {when(job.results_expire_at)}" if job.results_expire_at else ""
        rows.append(("Results", job.results + expiry))
    if job.error or job.failure_reason:
        reason = job.failure_reason.value if job.failure_reason else ""
        exit_code = f" (exit code {job.exit_code})" if job.exit_code is not None else ""
        message, stderr_tail = split_stderr_tail(job.error or "")
        rows.append(("Error", Text.assemble(as_text(reason, "red"), exit_code, " ", message)))
        if stderr_tail:
            rows.append(("Stderr", as_text("\n".join(stderr_tail), "dim")))
    if head is not None:
        rows.append(("Result", result_preview(head)))
    for name, value in rows:
        add_text_row(table, name, value)
    return table


def show_record(job: JobView, events: list[EventMessage], as_json: bool, receipt: dict[str, Any] | None = None) -> None:
    """A job's full record: spec, every transition, miner, attempts, cost, results; with its `receipt` (a
    finished job's), how its time was spent."""
    if as_json:
        resources = (receipt or {}).get("resources") or {}
        print_json(
            {
                **job.model_dump(mode="json"),
                "timeline": [e.model_dump(mode="json") for e in events],
                "timings": resources.get("timings"),
            }
        )
        return
    console.print(status_table(job))
    details = Table(show_header=False, box=None, pad_edge=False)
    details.add_column(style="bold", no_wrap=True)
    details.add_column()
    add_text_row(details, "Requirements", json.dumps(job.requirements.model_dump(exclude_none=True)))
    add_text_row(details, "Timeout", f"{job.timeout_seconds} s")
    add_text_row(details, "Attempts", f"{job.attempt} of {job.max_attempts}")
    add_text_row(details, "Params", json.dumps(job.params) if job.params else "-")
    add_text_row(details, "Results", job.results)
    if job.exit_code is not None:
        add_text_row(details, "Exit code", str(job.exit_code))
    add_text_row(
        details,
        "Estimated",
        f"{money(job.estimated_cost)} AITBC for ~{job.estimated_time_seconds} s (held {money(job.max_cost)} AITBC)",
    )
    if job.cost is not None:
        add_text_row(details, "Charged", f"{money(job.cost)} AITBC for {job.billed_seconds} s")
    spent = time_spent(receipt) if receipt is not None else None
    if spent is not None:
        add_text_row(details, "Time spent", spent)
    if job.retry_of:
        add_text_row(details, "Retry of", job.retry_of)
    if job.template or job.workflow:
        add_text_row(details, "From", ", ".join(f"{kind} {name}" for kind, name in _presets(job)))
    console.print(details)
    timeline = Table(title="Timeline")
    for column in ("When", "Status", "Move", "Miner"):
        timeline.add_column(column, no_wrap=column == "Status")
    for event in events:
        add_text_row(
            timeline,
            when(event.at),
            styled_status(event.status.value),
            str(event.data.get("move", "submit")),
            str(event.data.get("miner_id", "")),
        )
    console.print(timeline)


def follow(api: Client, job_id: str, as_json: bool, reconnect_seconds: float = DEFAULT_RECONNECT_SECONDS) -> JobView:
    """Show the job's progress (a bar, or JSON events) until it ends, reconnecting after a dropped connection
    (`ConnectionLost` past `reconnect_seconds`); return it as it ended. While it is pending the bar says what it
    waits for (`waiting_for`), read again whenever the stream has been quiet for `WAITING_REFRESH_SECONDS`:
    miners coming and going are not job events."""
    job = api.get(job_id)
    if not job.status.is_terminal:
        progress = Progress(
            TextColumn("[bold]{task.fields[status]}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[message]}", markup=False),
            TimeElapsedColumn(),
            console=console,
            disable=as_json,
        )
        with progress:
            status, waiting = job.status, job.waiting_for or ""
            task = progress.add_task(job_id, total=100, completed=job.progress, status=status.value, message=waiting)
            quiet = None if as_json else WAITING_REFRESH_SECONDS
            for event in api.events_or_quiet(0, job_id, quiet, reconnect_seconds=reconnect_seconds):
                if event is None:  # nothing happened for a while: what a pending job waits for may have changed
                    if status is JobStatus.PENDING:
                        progress.update(task, message=api.get(job_id).waiting_for or "")
                    continue
                status = event.status
                if as_json:
                    print_json_line(event)
                message = str(event.data.get("message") or "") if event.kind == "progress" else ""
                progress.update(task, completed=event.progress, status=event.status.value, message=message)
                if event.kind == "log" and not as_json:
                    for line in event.data.get("lines", []):
                        style = "red" if line.get("stream") == "stderr" else "dim"
                        progress.console.print(as_text(line.get("line", ""), style), highlight=False)
                if event.status.is_terminal:
                    break
        job = api.get(job_id)
    return job


def finish(job: JobView, as_json: bool) -> None:
    """Print how the job ended (with --json, its status object as the stream's last line) and exit with its
    code: 0 completed, 1 failed, 2 canceled."""
    if as_json:
        print_json_line(job)
    else:
        console.print(
            Text.assemble(
                f"{job.job_id}: ",
                styled_status(job.status.value),
                # the stderr lines were shown as they came; `status` shows the last of them again
                f" — {job.failure_reason.value}: {split_stderr_tail(job.error or '')[0]}" if job.failure_reason else "",
            )
        )
    raise typer.Exit({"completed": 0, "failed": EXIT_FAILED, "canceled": EXIT_CANCELED}.get(job.status.value, 0))


def show_warnings(job: SubmittedJobView) -> None:
    """What the coordinator warned of at submit (e.g. no connected miner can run the job now), on stderr."""
    for warning in job.warnings:
        errors.print(as_text(f"warning: {warning}", "yellow"))


def run_to_end(
    api: Client, fields: SubmitOptions, as_json: bool, on_submitted: Callable[[SubmittedJobView], None] | None = None
) -> JobView:
    """Submit and wait until the job ends (`Client.run`); a job that did not complete exits as `finish` says."""
    try:
        return api.run(on_submitted=on_submitted, **fields)
    except JobNotCompleted as error:
        finish(error.job, as_json)
        raise  # not reached: `finish` exits


def show_result(job: JobView, as_json: bool) -> None:
    """A completed job's result: its result.txt as it is (the whole status object with --json)."""
    if as_json:
        print_json(job)
    elif isinstance(job.result, str):
        typer.echo(job.result, nl=not job.result.endswith("\n"))
    else:
        errors.print(
            as_text(f"{job.job_id} completed; its result is not shown here (not text, or over 1 MiB): "),
            as_text(f"aitbc client download --job-id {job.job_id} --output DIR", "bold"),
        )
