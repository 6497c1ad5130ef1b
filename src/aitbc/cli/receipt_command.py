"""`aitbc client receipt`: a finished job's signed receipt, read: what it cost, which seconds were billed, and
how its time went (queued, setup, model load, run, upload). `get` shows the same time line. Checking the
signatures is `aitbc client verify`'s job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table

from aitbc.cli.apps import JobIdOption, client_app
from aitbc.cli.common import JsonOption, KeyOption, UrlOption, add_text_row, client, console, handles_errors, print_json
from aitbc.cli.common import short_time as when
from aitbc.domain.errors import Conflict, NotFound
from aitbc.protocol.jobs import JobView
from aitbc.sdk.client import Client

PARTS = (
    ("setup_seconds", "setup"),
    ("model_load_seconds", "model load"),
    ("run_seconds", "run"),
    ("upload_seconds", "upload"),
)


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + " s"


def queued_seconds(receipt: dict[str, Any]) -> float | None:
    """From the job's submission to its start, as the coordinator saw it."""
    created, started = receipt.get("created_at"), receipt.get("started_at")
    if not isinstance(created, str) or not isinstance(started, str):
        return None
    return max(0.0, (datetime.fromisoformat(started) - datetime.fromisoformat(created)).total_seconds())


def time_spent(receipt: dict[str, Any]) -> str | None:
    """`queued 0.2 s · setup 3.1 s · model load 1.2 s (cold) · run 0.4 s · upload 0.1 s`, from a receipt;
    None for one with no breakdown (signed before miners reported one, or from a miner that does not)."""
    resources = receipt.get("resources")
    timings = resources.get("timings") if isinstance(resources, dict) else None
    if not isinstance(timings, dict):
        return None
    parts: list[str] = []
    queued = queued_seconds(receipt)
    if queued is not None:
        parts.append(f"queued {_seconds(queued)}")
    for key, name in PARTS:
        value = timings.get(key)
        if not isinstance(value, int | float):
            continue
        note = ""
        if key == "model_load_seconds" and isinstance(timings.get("model_warm"), bool):
            note = " (warm)" if timings["model_warm"] else " (cold)"
        parts.append(f"{name} {_seconds(float(value))}{note}")
    return " · ".join(parts) or None


def finished_receipt(api: Client, job: JobView) -> dict[str, Any] | None:
    """The receipt of a finished job with results; None for one without (running, or no signed result)."""
    if not job.status.is_terminal or job.results == "none":
        return None
    try:
        return api.receipt(job.job_id).receipt
    except (NotFound, Conflict):
        return None


def _interval(times: dict[str, Any], name: str) -> str:
    pair = times.get(name) or {}
    return f"{when(pair.get('started_at'))} → {when(pair.get('ended_at'))}"


@client_app.command()
@handles_errors
def receipt(job_id: JobIdOption, url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Show a finished job's signed receipt: its charge, the seconds billed, and how its time was spent.

    A job is billed from the moment its model was ready, never for loading it; `aitbc client verify` checks
    the receipt's signatures and the files.
    """
    with client(url, api_key) as api:
        view = api.receipt(job_id)
    if as_json:
        print_json(view)
        return
    document = view.receipt
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    add_text_row(table, "Job", f"{document.get('job_id')} ({document.get('status')})")
    add_text_row(table, "Miner", str(document.get("miner_id")))
    charge = document.get("charge")
    if isinstance(charge, dict):
        add_text_row(
            table, "Charged", f"{charge.get('amount')} {charge.get('currency')} for {charge.get('billed_seconds')} s"
        )
        times = charge.get("times") or {}
        add_text_row(table, "Billed", _interval(times, "billed"))
        add_text_row(table, "Miner ran", _interval(times, "reported_by_miner"))
        add_text_row(table, "Coordinator saw", _interval(times, "observed_by_coordinator"))
    else:
        add_text_row(table, "Charged", "-")
    add_text_row(table, "Time spent", time_spent(document) or "- (not reported)")
    add_text_row(table, "Files", f"{document.get('files')} ({document.get('total_bytes')} bytes)")
    add_text_row(table, "Signed by", f"coordinator key {view.key_id} (check it: aitbc client verify --job-id {job_id})")
    console.print(table)
