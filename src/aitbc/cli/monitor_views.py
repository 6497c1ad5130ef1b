"""How `aitbc monitor …` shows things: your job metrics, the miners' room, and the dashboard's frame."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from aitbc.cli.common import add_text_row, as_text, styled_status
from aitbc.cli.dashboard import Dashboard
from aitbc.cli.job_views import when
from aitbc.domain.job import JobStatus
from aitbc.protocol.monitor import JobMetricsView, MinerMetricsView


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def counts_line(metrics: JobMetricsView) -> Text:
    parts: list[Text | str] = [as_text(f"Jobs: {metrics.total} — ", "bold")]
    for index, status in enumerate(JobStatus):
        parts += [", " if index else "", styled_status(status.value), f" {metrics.by_status.get(status.value, 0)}"]
    return Text.assemble(*parts)


def rates_line(metrics: JobMetricsView) -> Text:
    rates = metrics.rates
    return as_text(
        f"Submitted in the last {rates.window_minutes} min: {rates.submitted} ({rates.submitted_per_minute:g}/min); "
        f"of them completed {rates.completed} ({rates.completed_per_minute:g}/min), failed {rates.failed} "
        f"({rates.failed_per_minute:g}/min), canceled {rates.canceled}"
    )


def waits_line(metrics: JobMetricsView) -> Text:
    waits = metrics.waits
    return as_text(
        f"Wait from submission to start: median {_seconds(waits.median_seconds)}, p90 {_seconds(waits.p90_seconds)} "
        f"({waits.sample} started of your latest {waits.sample_of} jobs)"
    )


def queue_table(metrics: JobMetricsView) -> Table:
    table = Table(title=f"Your pending jobs in the queue ({metrics.pending} pending, {metrics.running} held by miners)")
    for column in ("Job", "Type", "Priority", "Submitted", "Ahead of it"):
        table.add_column(column)
    for place in metrics.queue:
        ahead = f"{place.ahead}+" if place.ahead_capped else str(place.ahead)
        add_text_row(table, place.job_id, place.type, place.priority.value, when(place.created_at), ahead)
    return table


def job_metrics_view(metrics: JobMetricsView) -> RenderableType:
    parts: list[RenderableType] = [counts_line(metrics), rates_line(metrics), waits_line(metrics)]
    if metrics.queue:
        parts.append(queue_table(metrics))
    else:
        parts.append(as_text(f"No pending jobs; {metrics.running} held by miners."))
    return Group(*parts)


def miners_line(miners: MinerMetricsView) -> Text:
    gpus = ", ".join(f"{model} ×{count}" for model, count in miners.gpus.items()) or "none (CPU only)"
    return as_text(
        f"Marketplace: {miners.live_miners} live miners, {miners.free_slots} of {miners.slots} slots free; GPUs: {gpus}"
    )


def dashboard_view(dashboard: Dashboard, live: bool) -> RenderableType:
    header = Text.assemble(
        as_text("AITBC dashboard", "bold"), f" — {dashboard.api.url} — events: ", as_text(dashboard.link, "cyan")
    )
    table = Table(title=f"Your latest {len(dashboard.rows)} jobs")
    table.add_column("Job", no_wrap=True)
    for column in ("Status", "Progress", "Type", "Model", "Submitted", "Message"):
        table.add_column(column)
    for row in dashboard.rows:
        add_text_row(
            table,
            row.job_id,
            styled_status(row.status.value),
            f"{row.progress}%",
            row.type,
            row.model or "-",
            when(row.created_at),
            row.message or "",
        )
    parts: list[RenderableType] = [header, table]
    if dashboard.metrics is not None:
        parts += [counts_line(dashboard.metrics), rates_line(dashboard.metrics)]
        first = dashboard.metrics.queue[0] if dashboard.metrics.queue else None
        if first is not None:
            ahead = f"{first.ahead}+" if first.ahead_capped else str(first.ahead)
            parts.append(as_text(f"Your oldest pending job {first.job_id}: {ahead} jobs ahead of it in the queue"))
    if dashboard.miners is not None:
        parts.append(miners_line(dashboard.miners))
    if live:
        parts.append(as_text("Ctrl-C to stop", "dim"))
    return Group(*parts)
