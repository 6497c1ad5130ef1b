"""`aitbc monitor metrics --component jobs|miners` and `aitbc monitor dashboard`: your jobs and the marketplace
from the client API (not the operator's metrics), once or live."""

from __future__ import annotations

import asyncio
import signal
from enum import StrEnum
from typing import Annotated

import typer
from rich.live import Live

from aitbc.cli.common import (
    NO_KEY,
    JsonOption,
    KeyOption,
    UrlOption,
    client,
    console,
    errors,
    fail,
    handles_errors,
    print_json,
)
from aitbc.cli.dashboard import Dashboard
from aitbc.cli.monitor_views import dashboard_view, job_metrics_view, miners_line
from aitbc.protocol.monitor import JobMetricsView
from aitbc.sdk.client import AsyncClient

monitor_app = typer.Typer(help="Your jobs and the marketplace: metrics, and a live dashboard.", no_args_is_help=True)


class Component(StrEnum):
    JOBS = "jobs"
    MINERS = "miners"


@monitor_app.command()
@handles_errors
def metrics(
    component: Annotated[
        Component,
        typer.Option(
            "--component",
            help="jobs: yours (counts by status, queue places, the last hour's throughput, waits to start); "
            "miners: the marketplace (live miners, free slots, GPUs).",
        ),
    ] = Component.JOBS,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Metrics of your jobs, or of the marketplace's miners."""
    with client(url, api_key) as api:
        found = api.job_metrics() if component is Component.JOBS else api.miner_metrics()
    if as_json:
        print_json(found)
    elif isinstance(found, JobMetricsView):
        console.print(job_metrics_view(found))
    else:
        console.print(miners_line(found))


async def _dashboard(url: str | None, api_key: str | None, shown: int, once: bool, as_json: bool) -> None:
    async with AsyncClient(url, api_key) as api:
        if not api.api_key:
            fail(NO_KEY)
        board = Dashboard(api, shown)
        await board.snapshot()
        if as_json:
            print_json(
                {
                    "jobs": [row.to_json() for row in board.rows],
                    "metrics": board.metrics.model_dump(mode="json") if board.metrics else None,
                    "miners": board.miners.model_dump(mode="json") if board.miners else None,
                }
            )
            return
        if once:
            console.print(dashboard_view(board, live=False))
            return
        stopping = asyncio.current_task()
        assert stopping is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.cancel)  # as Ctrl-C does
        errors.print(f"Following your jobs' events on {api.url} (Ctrl-C to stop).", highlight=False)
        # In a terminal, what is written to stderr meanwhile (`--debug`) shows above the view; elsewhere it stays
        # on stderr, and stdout gets the last frame when the view stops.
        terminal = console.is_terminal
        live = Live(dashboard_view(board, live=True), console=console, auto_refresh=False, redirect_stderr=terminal)
        with live:
            board.on_change = lambda: live.update(dashboard_view(board, live=True), refresh=True)
            try:
                await board.run()
            except asyncio.CancelledError:  # Ctrl-C or SIGTERM: the command ends cleanly with the last frame
                live.update(dashboard_view(board, live=False))


@monitor_app.command()
@handles_errors
def dashboard(
    once: Annotated[bool, typer.Option("--once", help="Show one frame and exit (for scripts and logs).")] = False,
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=100, help="How many of your latest jobs to show.")] = 15,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one snapshot as JSON for scripts (implies --once).")
    ] = False,
) -> None:
    """A live view of your jobs (status, progress, counts, queue) and the marketplace (live miners, free slots),
    kept current by your jobs' events; it reconnects when the connection drops. Ctrl-C stops it."""
    try:
        asyncio.run(_dashboard(url, api_key, jobs, once, as_json))
    except KeyboardInterrupt:
        errors.print("Stopped.", highlight=False)
