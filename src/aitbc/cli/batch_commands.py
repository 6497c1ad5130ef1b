"""`aitbc client batch-submit --jobs-file jobs.json` and `aitbc client submit-batch --file jobs.yaml`: the jobs
of a file in one request and one transaction (all submitted, or none), a table of what became of each, and, for
jobs with an `output:` folder, a wait for them to end and a download of their results there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aitbc.cli.apps import client_app
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
    styled_status,
)
from aitbc.cli.job_inputs import FIELDS, BatchJob, JobsFileError, read_jobs_file
from aitbc.cli.result_download import fetch_results
from aitbc.domain.errors import AitbcError
from aitbc.domain.money import display as money
from aitbc.protocol.batches import MAX_BATCH_JOBS, BatchResult
from aitbc.protocol.jobs import JobView
from aitbc.sdk.calls import SubmitOptions
from aitbc.sdk.client import Client
from aitbc.sdk.resuming import DEFAULT_RECONNECT_SECONDS

_FILE_HELP = (
    f"A JSON or YAML file: a list of jobs (or `jobs:` and a list), at most {MAX_BATCH_JOBS}. A job's fields: "
    f"{', '.join(FIELDS)}; `output` is a folder to download its results into once it ends."
)


@client_app.command("batch-submit")
@handles_errors
def batch_submit(
    jobs_file: Annotated[Path, typer.Option("--jobs-file", help=_FILE_HELP)],
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit the jobs of a file in one request: all are submitted, or (if one is refused) none."""
    submit_file(jobs_file, url, api_key, as_json)


@client_app.command("submit-batch")
@handles_errors
def submit_batch(
    file: Annotated[Path, typer.Option("--file", help=_FILE_HELP)],
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit the jobs of a file (YAML or JSON) in one request; wait for and download those with `output:`."""
    submit_file(file, url, api_key, as_json)


def submit_file(path: Path, url: str | None, api_key: str | None, as_json: bool) -> None:
    try:
        jobs = read_jobs_file(path.expanduser())
    except JobsFileError as error:
        fail(str(error))
    with client(url, api_key) as api:
        _upload_inputs(api, jobs)
        try:
            result = api.submit_many([cast(SubmitOptions, job.options) for job in jobs])
        except AitbcError as error:
            if error.item is None or not 0 <= error.item < len(jobs):
                raise
            refused = jobs[error.item]
            fail(
                f"{error.message}\n  (item {error.item} of {path}: {refused.label}); no job of the batch was submitted"
            )
        if as_json:
            print_json(result)
        else:
            console.print(_table(result, jobs))
        for item in result.jobs:
            for warning in item.warnings:
                errors.print(as_text(f"warning: item {item.index} ({item.job.job_id}): {warning}", "yellow"))
        waited = [job for job in jobs if job.output is not None]
        if not waited:
            return
        ended = _wait(api, [result.jobs[job.index].job.job_id for job in waited], as_json)
        for job in waited:
            view = ended[result.jobs[job.index].job.job_id]
            assert job.output is not None
            if view.results == "available":
                fetch_results(api, view.job_id, job.output, "folder", True, as_json)
            else:
                errors.print(
                    as_text(f"{view.job_id} has no results to download", "yellow"), as_text(f"({view.results})")
                )
    if as_json:
        print_json(list(ended.values()))
    else:
        console.print(_ended_table(ended))
    if any(view.status.value != "completed" for view in ended.values()):
        raise typer.Exit(1)


def _upload_inputs(api: Client, jobs: list[BatchJob]) -> None:
    """Upload each job's input file (each file once) and pass it by id, as `submit --input FILE` does."""
    uploaded: dict[Path, str] = {}
    for job in jobs:
        if job.upload is None:
            continue
        if job.upload not in uploaded:
            uploaded[job.upload] = api.upload_file(job.upload).file_id
        job.options["input_file_id"] = uploaded[job.upload]


def _table(result: BatchResult, jobs: list[BatchJob]) -> Table:
    replays = len(result.jobs) - result.created
    title = f"{result.created} jobs submitted" + (f", {replays} already submitted with their keys" if replays else "")
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("Job", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    for column in ("Type", "Model", "Est. cost", "Output"):
        table.add_column(column)
    for item, job in zip(result.jobs, jobs, strict=True):
        view = item.job
        add_text_row(
            table,
            str(item.index),
            view.job_id + ("" if item.created else " (replay)"),
            styled_status(view.status.value),
            view.type,
            view.model or "-",
            money(view.estimated_cost),
            str(job.output) if job.output else "-",
        )
    return table


def _wait(api: Client, job_ids: list[str], as_json: bool) -> dict[str, JobView]:
    """Follow the jobs, one after the other, until each has ended, behind one bar of how many have."""
    ended: dict[str, JobView] = {}
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[now]}", markup=False),
        TimeElapsedColumn(),
        console=errors,
        disable=as_json,
    )
    with bar:
        task = bar.add_task("jobs ended", total=len(job_ids), now="")
        for job_id in job_ids:
            job = api.get(job_id)
            if not job.status.is_terminal:
                for event in api.resumable_events(0, job_id, reconnect_seconds=DEFAULT_RECONNECT_SECONDS):
                    bar.update(task, now=f"{job_id}: {event.status.value} {event.progress}%")
                    if event.status.is_terminal:
                        break
                job = api.get(job_id)
            ended[job_id] = job
            bar.advance(task)
    return ended


def _ended_table(ended: dict[str, JobView]) -> Table:
    table = Table(title="How the jobs ended")
    table.add_column("Job", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    for column in ("Results", "Cost", "Error"):
        table.add_column(column)
    for view in ended.values():
        add_text_row(
            table,
            view.job_id,
            styled_status(view.status.value),
            view.results,
            money(view.cost) if view.cost is not None else "-",
            view.error or "-",
        )
    return table
