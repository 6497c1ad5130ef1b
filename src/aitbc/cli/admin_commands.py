"""`aitbc admin …`: API keys, accounts and credits, on the database directly (no server needed) or through the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from aitbc.cli.admin_access import DatabaseOption, DataDirOption, run_as_admin
from aitbc.cli.common import (
    JsonOption,
    KeyOption,
    UrlOption,
    add_text_row,
    as_text,
    console,
    handles_errors,
    print_json,
)
from aitbc.domain.money import display as money
from aitbc.domain.money import parse_amount
from aitbc.domain.plans import Plan, Role
from aitbc.protocol.admin import AccountView, CreatedKeyView, KeyView
from aitbc.protocol.billing import BalanceView
from aitbc.services.admin_views import account_view, balance_view, created_key_view, key_view

if TYPE_CHECKING:  # the server side loads only when a command works on the database directly
    from aitbc.wiring import Coordinator

app = typer.Typer(help="Administer accounts, API keys, credits and workflows.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
accounts_app = typer.Typer(help="List accounts and change their plans.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(accounts_app, name="accounts")


@keys_app.command("create")
@handles_errors
def create_key(
    name: Annotated[str, typer.Option("--name", help="The account's name: created if new, reused if it exists.")],
    role: Annotated[Role, typer.Option("--role", help="client, miner or admin.")],
    plan: Annotated[Plan | None, typer.Option("--plan", help="free, pro or enterprise.")] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key and print it (once: only its hash is kept)."""

    async def work(coordinator: Coordinator) -> CreatedKeyView:
        return created_key_view(await coordinator.accounts.create_key(name, role, plan))

    created = run_as_admin(
        data_dir,
        database_url,
        url,
        api_key,
        work,
        lambda api: api.create_key(name, role.value, plan.value if plan else None),
    )
    if as_json:
        print_json(created)
        return
    console.print(
        Text.assemble(
            "Created a ",
            as_text(created.role.value, "bold"),
            " key for account ",
            as_text(created.account, "bold"),
            f" ({created.plan.value} plan). It is shown only once:",
        )
    )
    typer.echo(created.api_key)


@keys_app.command("list")
@handles_errors
def list_keys(
    account: Annotated[str | None, typer.Option("--account", help="Only this account's keys.")] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List API keys (their prefixes, never the secrets)."""

    async def work(coordinator: Coordinator) -> list[KeyView]:
        return [key_view(k) for k in await coordinator.accounts.list_keys(account)]

    keys = run_as_admin(data_dir, database_url, url, api_key, work, lambda api: api.list_keys(account))
    if as_json:
        print_json(keys)
        return
    table = Table(title="API keys")
    for column in ("Key id", "Name", "Role", "Prefix", "Created", "Revoked"):
        table.add_column(column, no_wrap=column == "Key id")
    for key in keys:
        add_text_row(
            table,
            key.key_id,
            key.name,
            key.role.value,
            key.prefix + "…",
            key.created_at.isoformat(),
            key.revoked_at.isoformat() if key.revoked_at else "-",
        )
    console.print(table)


@keys_app.command("revoke")
@handles_errors
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…), from `aitbc admin keys list`.")],
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke an API key: it stops working at once."""

    async def work(coordinator: Coordinator) -> KeyView:
        return key_view(await coordinator.accounts.revoke_key(key_id))

    run_as_admin(data_dir, database_url, url, api_key, work, lambda api: api.revoke_key(key_id))
    if as_json:
        print_json({"key_id": key_id, "revoked": True})
    else:
        console.print(f"Revoked {key_id}.")


@accounts_app.command("list")
@handles_errors
def list_accounts(
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List accounts and their plans."""

    async def work(coordinator: Coordinator) -> list[AccountView]:
        return [account_view(a) for a in await coordinator.accounts.list_accounts()]

    accounts = run_as_admin(data_dir, database_url, url, api_key, work, lambda api: api.list_accounts())
    if as_json:
        print_json(accounts)
        return
    table = Table(title="Accounts")
    for column in ("Account id", "Name", "Plan", "Created"):
        table.add_column(column, no_wrap=column == "Account id")
    for account in accounts:
        add_text_row(table, account.account_id, account.name, account.plan.value, account.created_at.isoformat())
    console.print(table)


@accounts_app.command("set-plan")
@handles_errors
def set_plan(
    account: Annotated[str, typer.Option("--account", help="The account's name.")],
    plan: Annotated[Plan, typer.Option("--plan", help="free, pro or enterprise.")],
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move an account to another plan."""

    async def work(coordinator: Coordinator) -> AccountView:
        return account_view(await coordinator.accounts.set_plan(account, plan))

    updated = run_as_admin(data_dir, database_url, url, api_key, work, lambda api: api.set_plan(account, plan.value))
    if as_json:
        print_json(updated)
    else:
        console.print(as_text(f"Account {updated.name} is now on the {updated.plan.value} plan."))


credits_app = typer.Typer(help="Grant credits to accounts.", no_args_is_help=True)
app.add_typer(credits_app, name="credits")


@credits_app.command("grant")
@handles_errors
def grant_credits(
    account: Annotated[str, typer.Option("--account", help="The account's name.")],
    amount: Annotated[str, typer.Option("--amount", help="AITBC to add, e.g. 25 or 0.5.")],
    memo: Annotated[str, typer.Option("--memo", help="Why, for the ledger.")] = "",
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add credits to an account's balance (a `grant` row in its ledger)."""
    value = parse_amount(amount)

    async def work(coordinator: Coordinator) -> BalanceView:
        return balance_view(await coordinator.billing.grant(account, value, memo))

    found = run_as_admin(
        data_dir, database_url, url, api_key, work, lambda api: api.grant_credits(account, format(value, "f"), memo)
    )
    if as_json:
        print_json(found)
    else:
        console.print(
            as_text(
                f"Granted {money(value)} AITBC to {found.account}: available balance {money(found.available)} AITBC."
            )
        )
