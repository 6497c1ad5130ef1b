"""The `aitbc` entry point: `serve`, `client …`, `marketplace …`, `admin …`."""

from __future__ import annotations

import typer

from aitbc.cli import (  # the command modules register their commands on the apps as they load
    admin_commands,
    batch_commands,  # noqa: F401
    billing_commands,
    cancel_command,  # noqa: F401
    client_commands,  # noqa: F401
    log_commands,  # noqa: F401
    marketplace_commands,
    miner_command,
    receipt_command,  # noqa: F401
    results_commands,  # noqa: F401
    root_options,
    spending_commands,  # noqa: F401
    template_commands,  # noqa: F401
    verify_command,  # noqa: F401
    workflow_commands,
)
from aitbc.cli.apps import client_app
from aitbc.cli.blockchain_command import blockchain_app
from aitbc.cli.config_commands import config_app, profile_app
from aitbc.cli.monitor_commands import monitor_app
from aitbc.cli.serve_command import serve
from aitbc.version import VERSION

app = typer.Typer(
    name="aitbc",
    help="AITBC: submit AI jobs to GPU miners, follow them, and fetch verified results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve)
app.add_typer(client_app, name="client")
admin_commands.app.add_typer(workflow_commands.admin_workflows_app, name="workflows")
app.add_typer(admin_commands.app, name="admin")
app.add_typer(billing_commands.billing_app, name="billing")
app.add_typer(miner_command.app, name="miner")
app.add_typer(marketplace_commands.marketplace_app, name="marketplace")
app.add_typer(config_app, name="config")
app.add_typer(profile_app, name="profile")
app.add_typer(blockchain_app, name="blockchain")
app.add_typer(monitor_app, name="monitor")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aitbc {VERSION}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def root(
    context: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    config: root_options.ConfigOption = False,
    debug: root_options.DebugOption = False,
    profile: root_options.ProfileOption = None,
) -> None:
    """AITBC command line."""
    root_options.apply(context, config, debug, profile)


def main() -> None:
    app()
