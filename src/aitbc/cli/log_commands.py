"""`aitbc client logs`: a job's output. While it runs, the live log: stdout and stderr interleaved in the order the
job printed them, each line with when it was printed and its stream. Once it has ended, its package's
logs/stdout.log and logs/stderr.log, as they were written.

This registers on the `client` app; importing this module (as `cli.main` does) is what adds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import typer
from rich.text import Text

from aitbc.cli.apps import JobIdOption, client_app
from aitbc.cli.common import JsonOption, KeyOption, UrlOption, as_text, client, console, handles_errors
from aitbc.domain.clock import isoformat_z
from aitbc.protocol.jobs import EventMessage
from aitbc.sdk.client import Client
from aitbc.sdk.downloads import file_path
from aitbc.sdk.resuming import DEFAULT_RECONNECT_SECONDS

STREAM_STYLE = {"stdout": "", "stderr": "red"}


class LinePrinter:
    """How each line is printed: JSON (one object a line), raw (the text alone, stderr's on stderr, for pipes),
    or for people: `<time> <stream> <text>` on stdout."""

    def __init__(self, as_json: bool, raw: bool) -> None:
        self.as_json = as_json
        self.raw = raw

    def line(self, stream: str, text: str, seq: int | None = None, at: datetime | str | None = None) -> None:
        moment = _moment(at)
        if self.as_json:
            typer.echo(json.dumps({"seq": seq, "at": moment, "stream": stream, "line": text}, ensure_ascii=False))
        elif self.raw or moment is None:
            typer.echo(text, err=stream == "stderr")
        else:
            shown = moment.replace("T", " ")
            console.print(
                Text.assemble(as_text(shown, "dim"), " ", as_text(f"{stream:<6}", STREAM_STYLE.get(stream, "")), " "),
                as_text(text),
                sep="",
                soft_wrap=True,
                highlight=False,
            )

    def event_lines(self, event: EventMessage) -> None:
        """A log event's lines, each at its own time (else the event's: a miner that does not stamp lines)."""
        for item in event.data.get("lines", []):
            if isinstance(item, dict):
                at = item.get("at") or event.at
                self.line(str(item.get("stream", "stdout")), str(item.get("line", "")), event.seq, at)


def _moment(at: datetime | str | None) -> str | None:
    """A line's time as every time is shown: UTC, to the millisecond, with a `Z`."""
    if not isinstance(at, str):
        return isoformat_z(at)
    try:
        return isoformat_z(datetime.fromisoformat(at))
    except ValueError:
        return at


@client_app.command()
@handles_errors
def logs(
    job_id: JobIdOption,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends.")] = False,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Only each line's text, stderr's on stderr (for pipes): no time, no stream."),
    ] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a job's logs: while it runs, its live lines (stdout and stderr as they were printed, each with its
    time and stream; with --follow until it ends); once it has ended, its package's stdout.log and stderr.log."""
    printer = LinePrinter(as_json, raw)
    with client(url, api_key) as api:
        job = api.get(job_id)
        if job.status.is_terminal and job.results == "available" and _print_package(api, job_id, printer):
            return
        sent = api.logs(job_id)
        for item in sent.lines:
            printer.line(item.stream, item.line, item.seq, item.at)
        while sent.more:
            sent = api.logs(job_id, after=sent.last_seq)
            for item in sent.lines:
                printer.line(item.stream, item.line, item.seq, item.at)
        if not follow or sent.status.is_terminal:
            return
        for event in api.resumable_events(sent.last_seq, job_id, reconnect_seconds=DEFAULT_RECONNECT_SECONDS):
            if event.kind == "log":
                printer.event_lines(event)
            elif event.kind == "status" and event.status.is_terminal:
                break


def _print_package(api: Client, job_id: str, printer: LinePrinter) -> bool:
    """The package's log files, stdout.log then stderr.log; False when it has neither."""
    paths = {f.path for f in api.results(job_id).files}
    packaged = [name for name in ("stdout", "stderr") if f"logs/{name}.log" in paths]
    for name in packaged:
        for line in _lines(api.iter_bytes(file_path(job_id, f"logs/{name}.log"))):
            printer.line(name, line)
    return bool(packaged)


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Text lines of a byte stream, without holding more than one line."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")
