"""`aitbc client …`: submit, status, get, watch, cancel, list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

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
    short_time,
    styled_status,
)
from aitbc.protocol.jobs import JobView
from aitbc.sdk.client import Client

app = typer.Typer(help="Submit jobs and follow, cancel and list them.", no_args_is_help=True)

JobIdOption = Annotated[str, typer.Option("--job-id", help="The job's id (job_…).")]
EXIT_FAILED = 1
EXIT_CANCELED = 2


def parse_input(value: str) -> tuple[Any, Path | None]:
    """A path that exists is uploaded as a file; text that parses as a JSON object or list is JSON; anything
    else is plain text."""
    candidate = Path(value).expanduser()
    if len(value) < 4096 and "\n" not in value and candidate.is_file():
        return None, candidate
    stripped = value.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped), None
        except ValueError:
            pass
    return value, None


@app.command()
@handles_errors
def submit(
    input: Annotated[str | None, typer.Option("--input", help="A file path, text, or JSON.")] = None,
    type: Annotated[
        str | None,
        typer.Option("--type", help="Job type (runtime): command, embedding, text-generation, reencode."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model to run (e.g. gpt2, all-MiniLM-L6-v2).")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU model required (v100, a100, rtx3090, …).")] = None,
    gpu_count: Annotated[int, typer.Option("--gpu-count", min=1, help="Number of GPUs.")] = 1,
    min_vram: Annotated[float | None, typer.Option("--min-vram", help="Minimum VRAM per GPU, in GB.")] = None,
    timeout: Annotated[int, typer.Option("--timeout", min=1, help="Job timeout in seconds.")] = 3600,
    priority: Annotated[str, typer.Option("--priority", help="low, normal, high or urgent.")] = "normal",
    workflow_config: Annotated[
        str | None, typer.Option("--workflow-config", help="JSON parameters for the runtime.")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Retry-safe submit.")] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Wait for the job, showing its progress, then download its results here."),
    ] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a job and print its id."""
    params: dict[str, Any] = {}
    if workflow_config:
        try:
            params = json.loads(workflow_config)
        except ValueError as error:
            fail(f"--workflow-config is not valid JSON: {error}")
        if not isinstance(params, dict):
            fail("--workflow-config must be a JSON object, like '{\"temperature\": 0.8}'")
    inline, file_path = parse_input(input) if input is not None else (None, None)
    with client(url, api_key) as api:
        file_id = api.upload_file(file_path).file_id if file_path else None
        job = api.submit(
            type=type,
            model_name=model,
            input=inline,
            input_file_id=file_id,
            params=params,
            gpu_type=gpu,
            gpu_count=gpu_count,
            min_vram_gb=min_vram,
            priority=priority,
            timeout_seconds=timeout,
            idempotency_key=idempotency_key,
        )
    if as_json:
        print_json(job)
    else:
        typer.echo(job.job_id)
    if output is not None:
        _wait_and_download(job.job_id, output, url, api_key, as_json)


def _wait_and_download(job_id: str, output: Path, url: str | None, api_key: str | None, as_json: bool) -> None:
    """`submit --output DIR`, as in the submission guide: follow the job, then fetch its package (partial
    results of a failed or canceled job too) into DIR/<job_id>/; exit as `watch` does."""
    from aitbc.cli.results_commands import download

    with client(url, api_key) as api:
        job = _follow(api, job_id, as_json)
    if job.results == "available":
        download(
            job_id=job_id, output=output, checksum=True, format="folder", url=url, api_key=api_key, as_json=as_json
        )
    else:
        errors.print(as_text(f"{job_id} has no results to download", "yellow"), as_text(f"({job.results})"))
    _finish(job, as_json)


def status_table(job: JobView) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("Job", job.job_id),
        ("Status", styled_status(job.status.value)),
        ("Progress", f"{job.progress}%" + (f" — {job.progress_message}" if job.progress_message else "")),
        ("Type / model", f"{job.type} / {job.model or '-'}"),
        ("Priority", job.priority.value),
        ("Miner", job.miner_id or "-"),
        ("Created", short_time(_iso(job.created_at))),
        ("Started", short_time(_iso(job.started_at))),
        ("ETA", short_time(_iso(job.estimated_completion))),
        ("Completed", short_time(_iso(job.completed_at))),
    ]
    if job.waiting_for:
        rows.append(("Waiting for", as_text(job.waiting_for, "yellow")))
    if job.cost is not None:
        rows.append(("Cost", f"{job.cost} AITBC ({job.billed_seconds} s)"))
    else:
        rows.append(("Estimate", f"{job.estimated_cost} AITBC (at most {job.max_cost})"))
    if job.results != "none":
        expiry = f", until {short_time(_iso(job.results_expire_at))}" if job.results_expire_at else ""
        rows.append(("Results", job.results + expiry))
    if job.error or job.failure_reason:
        reason = job.failure_reason.value if job.failure_reason else ""
        rows.append(("Error", Text.assemble(as_text(reason, "red"), " ", job.error or "")))
    for name, value in rows:
        add_text_row(table, name, value)
    return table


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


@app.command()
@handles_errors
def status(
    job_id: JobIdOption,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="The full record, as `get` shows it.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a job's status and progress."""
    if verbose:
        get(job_id, url, api_key, as_json)
        return
    with client(url, api_key) as api:
        job = api.get(job_id)
    if as_json:
        print_json(job)
    else:
        console.print(status_table(job))


@app.command()
@handles_errors
def get(job_id: JobIdOption, url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Show a job's full record: spec, every transition, miner, attempts, cost, results."""
    with client(url, api_key) as api:
        job = api.get(job_id)
        events = api.timeline(job_id)
    if as_json:
        print_json({**job.model_dump(mode="json"), "timeline": [e.model_dump(mode="json") for e in events]})
        return
    console.print(status_table(job))
    details = Table(show_header=False, box=None, pad_edge=False)
    details.add_column(style="bold")
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
        f"{job.estimated_cost} AITBC for ~{job.estimated_time_seconds} s (held {job.max_cost} AITBC)",
    )
    if job.cost is not None:
        add_text_row(details, "Charged", f"{job.cost} AITBC for {job.billed_seconds} s")
    if job.retry_of:
        add_text_row(details, "Retry of", job.retry_of)
    console.print(details)
    timeline = Table(title="Timeline")
    for column in ("When", "Status", "Move", "Miner"):
        timeline.add_column(column)
    for event in events:
        add_text_row(
            timeline,
            short_time(_iso(event.at)),
            styled_status(event.status.value),
            str(event.data.get("move", "submit")),
            str(event.data.get("miner_id", "")),
        )
    console.print(timeline)


def _exit_for(job_status: str) -> int:
    return {"completed": 0, "failed": EXIT_FAILED, "canceled": EXIT_CANCELED}.get(job_status, 0)


@app.command()
@handles_errors
def watch(job_id: JobIdOption, url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Follow a job live until it ends; exit 0 when it completes, 1 when it fails, 2 when canceled."""
    with client(url, api_key) as api:
        job = _follow(api, job_id, as_json)
    _finish(job, as_json)


def _follow(api: Client, job_id: str, as_json: bool) -> JobView:
    """Show the job's progress (a bar, or JSON events) until it ends; return it as it ended."""
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
            task = progress.add_task(job_id, total=100, completed=job.progress, status=job.status.value, message="")
            for event in api.events(job_id=job_id, since=0):
                if as_json:
                    print_json(event)
                message = str(event.data.get("message") or "") if event.kind == "progress" else ""
                progress.update(task, completed=event.progress, status=event.status.value, message=message)
                if event.kind == "log" and not as_json:
                    for line in event.data.get("lines", []):
                        progress.console.print(as_text(line.get("line", ""), "dim"), highlight=False)
                if event.status.is_terminal:
                    break
        job = api.get(job_id)
    return job


def _finish(job: JobView, as_json: bool) -> None:
    if as_json:
        print_json(job)
    else:
        console.print(
            Text.assemble(
                f"{job.job_id}: ",
                styled_status(job.status.value),
                f" — {job.failure_reason.value}: {job.error}" if job.failure_reason else "",
            )
        )
    raise typer.Exit(_exit_for(job.status.value))


@app.command()
@handles_errors
def cancel(
    job_id: JobIdOption,
    force: Annotated[bool, typer.Option("--force", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a job: at once if queued; a running job is stopped by its miner (partial results are kept)."""
    confirm(force, "cancel", f"Cancel job {job_id}?", "not canceled")
    with client(url, api_key) as api:
        result = api.cancel(job_id)
    if as_json:
        print_json(result)
    else:
        console.print(Text.assemble(f"{job_id}: ", styled_status(result.outcome), f" — {result.message}"))
    if result.outcome == "failed":
        raise typer.Exit(1)


@app.command("list")
@handles_errors
def list_jobs(
    status: Annotated[str | None, typer.Option("--status", help="Only jobs in this status (comma-separated).")] = None,
    days: Annotated[int | None, typer.Option("--days", min=1, help="Only jobs of the last N days.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="From this date (2026-01-01).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Up to this date, inclusive (2026-01-31).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most N jobs.")] = 20,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List your jobs, newest first."""
    with client(url, api_key) as api:
        page = api.list(status=[status] if status else None, days=days, from_=from_, to=to, limit=limit)
    if as_json:
        print_json(page)
        return
    table = Table(title=f"{len(page.jobs)} of {page.total} jobs")
    table.add_column("Job", no_wrap=True)
    for column in ("Status", "Progress", "Type", "Model", "Created", "Miner"):
        table.add_column(column)
    for job in page.jobs:
        add_text_row(
            table,
            job.job_id,
            styled_status(job.status.value),
            f"{job.progress}%",
            job.type,
            job.model or "-",
            short_time(_iso(job.created_at)),
            job.miner_id or "-",
        )
    console.print(table)
