"""Spending limits: `aitbc billing limit set|show|clear`, `aitbc billing alert` and `aitbc admin accounts set-limit`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from aitbc.cli.admin_access import DatabaseOption, DataDirOption, run_as_admin
from aitbc.cli.admin_commands import accounts_app
from aitbc.cli.billing_commands import billing_app
from aitbc.cli.common import (
    JsonOption,
    KeyOption,
    UrlOption,
    add_text_row,
    as_text,
    client,
    console,
    fail,
    handles_errors,
    print_json,
    short_time,
)
from aitbc.domain.money import parse_amount
from aitbc.protocol.billing import SpendingView

if TYPE_CHECKING:  # the server side loads only when a command works on the database directly
    from aitbc.wiring import Coordinator

limit_app = typer.Typer(
    help="Your monthly spending limit: what your jobs may cost in a UTC calendar month.", no_args_is_help=True
)
billing_app.add_typer(limit_app, name="limit")

AmountHelp = "AITBC, e.g. 5 or 0.25 (a positive amount, at most 9 decimal places)."


def _amount(text: str, option: str) -> str:
    """A typed amount checked here, so a typo is refused before any request, as the coordinator would."""
    try:
        value = parse_amount(text)
    except ValueError as error:
        fail(f"{option}: {error}")
    if value <= 0:
        fail(f"{option} must be a positive amount; to remove it, use `clear`")
    return format(value, "f")


def _money(value: object | None) -> str:
    return f"{value} AITBC" if value is not None else "none"


def show_spending(found: SpendingView, as_json: bool) -> None:
    """The account's month: its cap, what counts toward it, and its alert (shared by every command here)."""
    if as_json:
        print_json(found)
        return
    table = Table(title=f"Spending of {found.account} in {found.month} (UTC)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    add_text_row(table, "Monthly limit", _money(found.monthly_limit))
    add_text_row(table, "Charged this month", _money(found.charged_this_month))
    add_text_row(table, "Held by unfinished jobs", _money(found.held))
    add_text_row(table, "Counts toward the limit", _money(found.committed))
    if found.remaining is not None:
        add_text_row(table, "Remaining", _money(found.remaining))
    add_text_row(table, "Month resets", short_time(found.resets_at.isoformat().replace("+00:00", "Z")))
    alert = found.alert
    add_text_row(table, "Alert at", _money(alert.at) + (" (fired this month)" if alert.fired_this_month else ""))
    if alert.last_fired_at is not None:
        fired = short_time(alert.last_fired_at.isoformat().replace("+00:00", "Z"))
        add_text_row(
            table,
            "Last alert",
            f"{fired}: {alert.last_fired_charged} AITBC charged in {alert.last_fired_month} reached "
            f"{alert.last_fired_threshold} AITBC (job {alert.last_fired_job_id})",
        )
    else:
        add_text_row(table, "Last alert", "never fired")
    console.print(table)


@limit_app.command("set")
@handles_errors
def set_limit(
    monthly: Annotated[str, typer.Option("--monthly", help="The cap per UTC month, in " + AmountHelp)],
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cap what your jobs may cost per month: a submit whose hold (its timeout at its rate) would take this
    month's charges plus what unfinished jobs hold past the cap is refused, and nothing is stored."""
    with client(url, api_key) as api:
        found = api.set_monthly_limit(_amount(monthly, "--monthly"))
    if not as_json:
        console.print(as_text(f"Monthly spending limit set to {found.monthly_limit} AITBC."))
    show_spending(found, as_json)


@limit_app.command("show")
@handles_errors
def show_limit(url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Show your monthly limit, what you were charged this month and hold now, and your alert."""
    with client(url, api_key) as api:
        show_spending(api.spending(), as_json)


@limit_app.command("clear")
@handles_errors
def clear_limit(url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Remove your monthly spending limit (the balance still bounds what jobs may hold)."""
    with client(url, api_key) as api:
        found = api.set_monthly_limit(None)
    if not as_json:
        console.print("Monthly spending limit removed.")
    show_spending(found, as_json)


@billing_app.command("alert")
@handles_errors
def alert(
    at: Annotated[
        str | None, typer.Option("--at", help="Alert when this month's charges reach this, in " + AmountHelp)
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the alert.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set, clear or show your spending alert (without options: show it and when it last fired).

    The alert is a `billing.alert` event on your event stream (WS /v1/jobs/ws) when this month's charges reach
    the threshold, once a month."""
    if at is not None and clear:
        fail("give --at AMOUNT to set the alert or --clear to remove it, not both")
    threshold = _amount(at, "--at") if at is not None else None
    with client(url, api_key) as api:
        if threshold is not None:
            found = api.set_spending_alert(threshold)
            message = f"Alert set: you will be told when this month's charges reach {found.alert.at} AITBC."
        elif clear:
            found, message = api.set_spending_alert(None), "Spending alert removed."
        else:
            found, message = api.spending(), ""
    if message and not as_json:
        console.print(as_text(message))
    show_spending(found, as_json)


@accounts_app.command("set-limit")
@handles_errors
def set_account_limit(
    account: Annotated[str, typer.Option("--account", help="The account's name.")],
    monthly: Annotated[str | None, typer.Option("--monthly", help="The cap per UTC month, in " + AmountHelp)] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the account's limit.")] = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set (or with --clear remove) an account's monthly spending limit."""
    if (monthly is None) == (not clear):
        fail("give --monthly AMOUNT to set the limit or --clear to remove it")
    amount = _amount(monthly, "--monthly") if monthly is not None else None

    async def work(coordinator: Coordinator) -> SpendingView:
        found = await coordinator.accounts.account_named(account)
        return await coordinator.spending.set_monthly_limit(found, amount)

    found = run_as_admin(data_dir, database_url, url, api_key, work, lambda api: api.set_account_limit(account, amount))
    if not as_json:
        limit = f"{found.monthly_limit} AITBC" if found.monthly_limit is not None else "removed"
        console.print(as_text(f"Monthly spending limit of {found.account}: {limit}."))
    show_spending(found, as_json)
