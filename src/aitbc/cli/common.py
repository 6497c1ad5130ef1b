"""What every command shares: the Rich consoles, JSON output, error handling, connection options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import BaseModel
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aitbc.domain.errors import AitbcError
from aitbc.sdk.client import Client
from aitbc.sdk.errors import ConnectionLost

console = Console()
errors = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

UrlOption = Annotated[str | None, typer.Option("--url", help="Coordinator URL (else AITBC_URL, else the profile).")]
KeyOption = Annotated[str | None, typer.Option("--api-key", help="API key (else AITBC_API_KEY, else the profile).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def as_text(value: object, style: str = "") -> Text:
    """Anybody's text (a job's fields, log lines, messages from the coordinator) as a Rich `Text`: printed as
    it is, never parsed as markup, where a `[/bold]` in a log line would crash the command."""
    return Text(str(value), style=style)


def add_text_row(table: Table, *cells: str | Text) -> None:
    """A table row whose plain strings are shown as they are (Rich parses a string cell as markup). However
    narrow the terminal, nothing is cut off with an ellipsis: a `no_wrap` column (an id, a status) keeps the
    width of its longest cell, and the other columns fold their text onto more lines."""
    texts = [cell if isinstance(cell, Text) else as_text(cell) for cell in cells]
    for column, text in zip(table.columns, texts, strict=False):
        if column.no_wrap:
            widest = max(cell_len(line) for line in text.plain.split("\n"))
            column.min_width = max(column.min_width or 0, widest)
        else:
            column.overflow = "fold"
    table.add_row(*texts)


# `watch` (and `submit --output`): the coordinator could not be reached again within --reconnect-timeout; the
# job itself goes on (0 completed, 1 failed, 2 canceled are the job's own outcomes).
EXIT_CONNECTION_LOST = 3


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, never wrapped (a script greps it), and exit `code`."""
    errors.print(Text.assemble(as_text("Error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def notice(message: str) -> None:
    """Why the command waits (a reconnect, a rate limit): on stderr, so stdout stays the command's answer."""
    errors.print(as_text(message, "yellow"), highlight=False, soft_wrap=True)


def confirm(force: bool, verb: str, question: str, declined: str) -> None:
    """Ask before something that cannot be undone; without a terminal to ask on, refuse unless --force. A "no"
    is an answer, not an error: the command says so and exits 0."""
    if force:
        return
    if not sys.stdin.isatty():
        fail(f"refusing to {verb} without confirmation: no terminal to ask on. Pass --force to {verb}.", 2)
    if not typer.confirm(question):
        console.print(as_text(declined))  # the user's answer, not an error
        raise typer.Exit(0)


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn AITBC errors into a one-line message and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ConnectionLost as error:
            fail(error.message, EXIT_CONNECTION_LOST)
        except AitbcError as error:
            fail(error.message)
        except ValueError as error:
            fail(str(error))

    return wrapper


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def print_json_line(value: BaseModel) -> None:
    """One JSON document on one line (JSON Lines), for streams a script reads line by line (`watch --json`)."""
    typer.echo(value.model_dump_json())


NO_KEY = (
    "no API key: pass --api-key, set AITBC_API_KEY, or run `aitbc serve` once on this machine "
    "(it writes a profile), or create one with `aitbc admin keys create`"
)


def client(url: str | None, api_key: str | None) -> Client:
    made = Client(url, api_key, notices=notice)
    if not made.api_key:
        made.close()
        fail(NO_KEY)
    return made


STATUS_STYLE = {
    "pending": "yellow",
    "assigned": "cyan",
    "running": "blue",
    "completed": "green",
    "failed": "red",
    "canceling": "magenta",
    "canceled": "dim",
}


def styled_status(status: str) -> Text:
    return as_text(status, STATUS_STYLE.get(status, "white"))


def short_time(value: str | None) -> str:
    return value.replace("T", " ").split(".")[0].rstrip("Z") + "Z" if value else "-"
