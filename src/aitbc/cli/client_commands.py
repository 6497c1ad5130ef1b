"""`aitbc client …`: submit, status, get, watch, list (cancel: `cancel_command`)."""

from __future__ import annotations

import contextlib
import uuid
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
    console,
    errors,
    fail,
    handles_errors,
    print_json,
    print_json_line,
    styled_status,
)
from aitbc.cli.job_inputs import json_object, parse_input
from aitbc.cli.job_views import (
    ReconnectOption,
    finish,
    follow,
    run_to_end,
    show_record,
    show_result,
    show_warnings,
    status_table,
    when,
)
from aitbc.cli.marketplace_commands import choose_gpu
from aitbc.cli.receipt_command import finished_receipt
from aitbc.cli.result_download import fetch_results
from aitbc.domain.durations import parse_duration
from aitbc.domain.errors import AitbcError
from aitbc.sdk.calls import SubmitOptions
from aitbc.sdk.resuming import DEFAULT_RECONNECT_SECONDS


@client_app.command()
@handles_errors
def submit(
    input: Annotated[
        str | None, typer.Option("--input", help="A file path, text, or JSON (a path must exist; URLs are refused).")
    ] = None,
    input_text: Annotated[
        str | None, typer.Option("--input-text", help="Text sent as it is, even if it looks like a path or URL.")
    ] = None,
    type: Annotated[
        str | None,
        typer.Option("--type", help="Job type (runtime): command, embedding, text-generation, reencode."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model to run (e.g. gpt2, all-MiniLM-L6-v2).")] = None,
    gpu: Annotated[
        str | None, typer.Option("--gpu", "--gpu-type", help="GPU model required (v100, a100, rtx3090, rtx4090, …).")
    ] = None,
    gpu_count: Annotated[int | None, typer.Option("--gpu-count", min=1, help="Number of GPUs (default 1).")] = None,
    min_vram: Annotated[float | None, typer.Option("--min-vram", help="Minimum VRAM per GPU, in GB.")] = None,
    timeout: Annotated[
        int | None, typer.Option("--timeout", min=1, help="Job timeout in seconds (default 3600).")
    ] = None,
    priority: Annotated[
        str | None, typer.Option("--priority", help="low, normal (the default), high or urgent.")
    ] = None,
    queue_timeout: Annotated[
        str | None,
        typer.Option(
            "--queue-timeout",
            help="How long the job may wait for a miner (90s, 10m, 2h; a bare number is seconds), then expire at "
            "no charge. Without it a job no connected miner can run is refused.",
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option("--template", help="Start from your template (aitbc client template list); flags override it."),
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", help="Run a workflow: NAME or NAME@VERSION (aitbc client workflows list)."),
    ] = None,
    workflow_config: Annotated[
        str | None,
        typer.Option("--workflow-config", help="JSON parameters for the runtime (over the workflow's and template's)."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Retry-safe submit: the same key again answers the job it made (default: a fresh key, so the "
            "CLI's own retries after a rate limit never submit twice).",
        ),
    ] = None,
    agent_id: Annotated[
        str | None,
        typer.Option("--agent-id", help="Run on this miner only: its id or name (aitbc marketplace gpu list)."),
    ] = None,
    use_marketplace: Annotated[
        bool,
        typer.Option(
            "--use-marketplace", help="Run on the cheapest GPU on offer for this job (or --gpu-type's), quoted first."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Submit a --use-marketplace quote without asking.")] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Your name for the job (up to 200 characters), shown and filterable.")
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option("--tag", help="A label to find the job by (repeat for more, up to 16): letters, digits, _.:-"),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Wait for the job to end and print its result (exit 1 if it fails, 2 if canceled)."
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Wait for the job, showing its progress, then download its results here."),
    ] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a job and print its id (with --wait, its result once it ends).

    With --template or --workflow, the coordinator takes what the flags leave out from them."""
    if wait and output is not None:
        fail("--wait prints the result and --output downloads the results: use one of them", 2)
    params = json_object(workflow_config, "--workflow-config") if workflow_config else {}
    if input is not None and input_text is not None:
        raise ValueError("give --input or --input-text, not both")
    inline, file_path = parse_input(input) if input is not None else (input_text, None)
    requirements = {"gpu_type": gpu, "gpu_count": gpu_count, "min_vram_gb": min_vram, "miner_id": agent_id}
    requirements = {name: value for name, value in requirements.items() if value is not None}
    with client(url, api_key) as api:
        if use_marketplace:  # quoted (and on a terminal, confirmed) before anything is uploaded
            job_kind: dict[str, Any] = {"type": type, "model": model, "priority": priority, "timeout_seconds": timeout}
            job_kind |= {"template": template, "workflow": workflow, "params": params}
            requirements["gpu_type"] = choose_gpu(api, yes, **job_kind, requirements=requirements)
        file_id = api.upload_file(file_path).file_id if file_path else None
        fields: SubmitOptions = {
            "type": type,
            "model": model,
            "input": inline,
            "input_file_id": file_id,
            "params": params,
            "requirements": requirements,
            "priority": priority,
            "timeout_seconds": timeout,
            "queue_timeout_seconds": parse_duration(queue_timeout, "s") if queue_timeout is not None else None,
            "template": template,
            "workflow": workflow,
            "name": name,
            "tags": tags or None,
            "idempotency_key": idempotency_key or f"cli-{uuid.uuid4().hex}",
        }
        if wait:
            show_result(run_to_end(api, fields, as_json, show_warnings), as_json)
            return
        submitted = api.submit(**fields)
        show_warnings(submitted)
        if as_json and output is not None:
            print_json_line(submitted)  # then the job's events and its final status, one a line, as `watch --json`
        elif as_json:
            print_json(submitted)
        else:
            typer.echo(submitted.job_id)
        if output is None:
            return
        # As in the submission guide: follow the job, then fetch its package (partial results of a failed or
        # canceled job too) into DIR/<job_id>/; exit as `watch` does.
        job = follow(api, submitted.job_id, as_json)
        if job.results == "available":
            fetch_results(api, job.job_id, output, "folder", True, as_json)
        else:
            errors.print(as_text(f"{job.job_id} has no results to download", "yellow"), as_text(f"({job.results})"))
    finish(job, as_json)


@client_app.command()
@handles_errors
def status(
    job_id: JobIdOption,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="The full record, as `get` shows it.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a job's status and progress."""
    with client(url, api_key) as api:
        job = api.get(job_id)
        if verbose:
            show_record(job, api.timeline(job_id), as_json, finished_receipt(api, job))
            return
        if as_json:
            print_json(job)
            return
        head = None
        if job.result_links is not None:
            with contextlib.suppress(AitbcError):  # deleted or expired since: the status is still worth showing
                head = api.result_head(job_id)  # the start of result.txt
    console.print(status_table(job, head))


@client_app.command()
@handles_errors
def get(job_id: JobIdOption, url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Show a job's full record: spec, every transition, miner, attempts, cost, results, and (finished) how its
    time was spent."""
    with client(url, api_key) as api:
        job = api.get(job_id)
        show_record(job, api.timeline(job_id), as_json, finished_receipt(api, job))


@client_app.command()
@handles_errors
def watch(
    job_id: JobIdOption,
    reconnect_timeout: ReconnectOption = DEFAULT_RECONNECT_SECONDS,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a job live until it ends; exit 0 when it completes, 1 when it fails, 2 when canceled, 3 when the
    connection to the coordinator is lost and cannot be re-established within --reconnect-timeout.

    A dropped connection or a coordinator restart is survived: watch reconnects and resumes after the last
    event it showed. With --json it prints one event per line (JSON Lines), then the job's final status."""
    with client(url, api_key) as api:
        job = follow(api, job_id, as_json, reconnect_timeout)
    finish(job, as_json)


@client_app.command("list")
@handles_errors
def list_jobs(
    status: Annotated[str | None, typer.Option("--status", help="Only jobs in this status (comma-separated).")] = None,
    days: Annotated[int | None, typer.Option("--days", min=1, help="Only jobs of the last N days.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="From this date (2026-01-01).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Up to this date, inclusive (2026-01-31).")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only jobs with this tag.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only jobs of exactly this name.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most N jobs.")] = 20,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List your jobs, newest first."""
    with client(url, api_key) as api:
        page = api.list(
            status=[status] if status else None, days=days, from_=from_, to=to, tag=tag, name=name, limit=limit
        )
    if as_json:
        print_json(page)
        return
    table = Table(title=f"{len(page.jobs)} of {page.total} jobs")
    table.add_column("Job", no_wrap=True)
    for column in ("Name", "Status", "Progress", "Type", "Model", "Created", "Miner", "Tags"):
        table.add_column(column, no_wrap=column == "Status")
    for job in page.jobs:
        add_text_row(
            table,
            job.job_id,
            job.name or "-",
            styled_status(job.status.value),
            f"{job.progress}%",
            job.type,
            job.model or "-",
            when(job.created_at),
            job.miner_id or "-",
            " ".join(job.tags) or "-",
        )
    console.print(table)
