"""`aitbc blockchain status`: the troubleshooting guide's connectivity test. Is the coordinator reachable, which
version, how long a round trip takes, does it accept the API key — and, plainly, how this deployment settles:
in the coordinator's own append-only ledger, not on a chain."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from aitbc.cli.common import JsonOption, KeyOption, UrlOption, add_text_row, as_text, console, errors, print_json
from aitbc.domain.errors import AitbcError, Unauthorized
from aitbc.domain.redaction import mask_key
from aitbc.sdk.base import QUICK_TIMEOUT
from aitbc.sdk.client import Client
from aitbc.sdk.config import effective_settings

blockchain_app = typer.Typer(
    help="Connectivity and settlement (this deployment settles in its own ledger).", no_args_is_help=True
)

SETTLEMENT = {
    "kind": "ledger",
    "chain": None,
    "description": "This deployment settles in its own ledger: the coordinator's append-only billing ledger "
    "(`aitbc billing list`), written in the same transaction as each job's final move. Nothing is settled on a "
    "blockchain.",
}
EXIT_UNREACHABLE = 1
EXIT_KEY_REFUSED = 1


@dataclass
class StatusReport:
    url: str
    reachable: bool
    version: str | None = None
    round_trip_ms: float | None = None
    error: str | None = None
    api_key: str | None = None  # masked
    api_key_source: str = "not set"
    key_accepted: bool | None = None  # None: no key to test, or the test could not answer
    account: str | None = None
    role: str | None = None
    plan: str | None = None
    key_error: str | None = None

    @property
    def exit_code(self) -> int:
        if not self.reachable:
            return EXIT_UNREACHABLE
        return EXIT_KEY_REFUSED if self.key_accepted is False else 0


def check(url: str | None, api_key: str | None) -> StatusReport:
    """Ping the coordinator, then ask it who the key is."""
    key = effective_settings(url, api_key)["api_key"]
    with Client(url, api_key, timeout=QUICK_TIMEOUT) as api:
        report = StatusReport(url=api.url, reachable=False, api_key_source=key.source)
        report.api_key = mask_key(api.api_key) if api.api_key else None
        try:
            ping = api.ping()
        except AitbcError as error:  # unreachable, or something that is not a coordinator answering
            report.error = error.message
            return report
        report.reachable, report.version, report.round_trip_ms = True, ping.version, ping.round_trip_ms
        if not api.api_key:
            return report
        try:
            who = api.whoami()
        except Unauthorized as error:
            report.key_accepted, report.key_error = False, error.message
        except AitbcError as error:  # lost meanwhile, rate-limited: the key's test did not answer
            report.key_error = error.message
        else:
            report.key_accepted, report.account, report.role, report.plan = True, who.account, who.role, who.plan
    return report


def _key_line(report: StatusReport) -> Text:
    if report.api_key is None:
        return as_text("none configured: pass --api-key, set AITBC_API_KEY, or use a profile (`aitbc --config`)")
    where = f"{report.api_key} ({report.api_key_source}): "
    if report.key_accepted:
        return Text.assemble(
            as_text(where),
            as_text("accepted", "green"),
            as_text(f" — account {report.account}, role {report.role}, plan {report.plan}"),
        )
    if report.key_accepted is False:
        return Text.assemble(as_text(where), as_text("refused", "red"), as_text(f" — {report.key_error}"))
    return Text.assemble(as_text(where), as_text("not tested", "yellow"), as_text(f" — {report.key_error or '-'}"))


def show(report: StatusReport, as_json: bool) -> None:
    if as_json:
        document: dict[str, Any] = {**asdict(report), "settlement": SETTLEMENT}
        print_json(document)
    else:
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        reachable = as_text("reachable", "green") if report.reachable else as_text("unreachable", "red")
        add_text_row(table, "Coordinator", reachable)
        add_text_row(table, "URL", report.url)
        if report.reachable:
            add_text_row(table, "Version", report.version or "-")
            add_text_row(table, "Round trip", f"{report.round_trip_ms} ms")
            add_text_row(table, "API key", _key_line(report))
        add_text_row(table, "Settlement", str(SETTLEMENT["description"]))
        console.print(table)
    if not report.reachable:
        errors.print(Text.assemble(as_text("Error:", "bold red"), " ", as_text(report.error or "unreachable")))


def connectivity_test(url: str | None = None, api_key: str | None = None, as_json: bool = False) -> int:
    """The test and its report; the exit code it calls for (0 reachable and the key, if any, accepted)."""
    try:
        report = check(url, api_key)
    except AitbcError as error:  # the profile file cannot be read, or names no such profile
        errors.print(Text.assemble(as_text("Error:", "bold red"), " ", as_text(error.message)))
        return 1
    show(report, as_json)
    return report.exit_code


@blockchain_app.command("status")
def status(url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Test the connection: is the coordinator reachable (version, round trip), does it accept your API key,
    and how this deployment settles. Exits 1 when the coordinator is unreachable or refuses the key."""
    raise typer.Exit(connectivity_test(url, api_key, as_json))
