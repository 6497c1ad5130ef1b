"""One row per measurement, and the table that prints them with a ratio to each workload's reference row.

Each workload names one reference (e2e and drain: arq; latency: RQ; reads: the FastAPI hello-world; round
trip: the runtime's own time; growth: the smallest history), so a ratio reads the same way in every run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Row:
    workload: str
    system: str  # "aitbc (sqlite)", "arq", "hello-world", ...
    metric: str  # "jobs/s", "p50 ms", "req/s", ...
    value: float
    command: str = ""  # what reproduces it
    detail: dict[str, float | str] = field(default_factory=dict)  # p99, errors, RSS, ...
    reference: bool = False  # the row this workload's ratios divide by
    ratio: float | None = None


def with_ratios(rows: list[Row]) -> list[Row]:
    """Fill `ratio` = value ÷ the value of the reference row of the same workload and metric."""
    references = {(row.workload, row.metric): row.value for row in rows if row.reference}
    for row in rows:
        base = references.get((row.workload, row.metric))
        row.ratio = row.value / base if base else None
    return rows


def _number(value: float) -> str:
    if value != value:  # NaN: not measured
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _cell(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e6 else _number(float(value))


def detail_text(detail: dict[str, float | str]) -> str:
    return ", ".join(f"{key} {_cell(value)}" for key, value in detail.items())


def render(rows: list[Row]) -> str:
    header = ("workload", "system", "metric", "value", "ratio", "detail")
    lines = [
        (
            row.workload,
            row.system + (" *" if row.reference else ""),
            row.metric,
            _number(row.value),
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
            detail_text(row.detail),
        )
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=False)]
    out = []
    for index, cells in enumerate([header, *lines]):
        out.append("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    out.append("* the reference row of its workload: ratio = value ÷ the reference's value (same metric)")
    failing = [f"{row.workload} / {row.system}" for row in rows if row.detail.get("non-2xx")]
    if failing:
        out.append("WARNING: answers other than 2xx (errors, or a rate limit) in: " + "; ".join(failing))
    commands: dict[str, list[str]] = {}
    for row in rows:
        if row.command:
            names = commands.setdefault(row.command, [])
            name = f"{row.workload} / {row.system}" if not row.workload.startswith("growth") else row.workload
            if name not in names:
                names.append(name)
    if commands:
        out.append("")
        out.append("reproduce (each workload's command):")
        for command, names in commands.items():
            out.append(f"  {'; '.join(names)}")
            out.append(f"      {command}")
    return "\n".join(out)


def write_json(rows: list[Row], path: Path, settings: Mapping[str, object]) -> None:
    path.write_text(json.dumps({"settings": settings, "rows": [asdict(row) for row in rows]}, indent=2) + "\n")
