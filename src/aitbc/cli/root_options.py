"""The options of `aitbc` itself, before any command: `--profile` (which CLI profile every command uses),
`--debug` (the SDK's HTTP log on stderr) and `--config` (the effective configuration, then exit).

`aitbc --config` and `aitbc --debug` work alone, as the troubleshooting guide types them: the first shows the
configuration; the second shows it too, then tests the connection (`aitbc blockchain status`) with every
exchange logged."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from aitbc.cli.common import fail
from aitbc.domain.errors import AitbcError
from aitbc.sdk.config import choose_profile

ConfigOption = Annotated[
    bool,
    typer.Option("--config", help="Show the effective configuration and where each value comes from, then exit."),
]
DebugOption = Annotated[
    bool,
    typer.Option(
        "--debug",
        help="Log every HTTP exchange (method, URL, status, time, request id; keys masked) to stderr. Alone: the "
        "configuration and a connectivity test.",
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="The CLI profile to use (else AITBC_PROFILE, else the profile file's default)."),
]

SDK_LOGGER = "aitbc.sdk"


class StderrLines(logging.Handler):
    """Each record as a `debug: …` line on the standard error the command has now (a test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            typer.echo(f"debug: {self.format(record)}", err=True)
        except Exception:
            self.handleError(record)


_debug_lines = StderrLines()


def debugging() -> bool:
    return _debug_lines in logging.getLogger(SDK_LOGGER).handlers


def set_debug(on: bool) -> None:
    """Turn the SDK's HTTP log on stderr on or off (off again for the next command run in the same process)."""
    logger = logging.getLogger(SDK_LOGGER)
    if on:
        logger.setLevel(logging.DEBUG)
        if _debug_lines not in logger.handlers:
            logger.addHandler(_debug_lines)
    else:
        logger.setLevel(logging.NOTSET)
        logger.removeHandler(_debug_lines)


def apply(context: typer.Context, config: bool, debug: bool, profile: str | None) -> None:
    """Run by the root callback before any command."""
    from aitbc.cli.blockchain_command import connectivity_test
    from aitbc.cli.config_commands import show_config

    try:
        choose_profile(profile)
    except AitbcError as error:
        fail(error.message)
    set_debug(debug)
    if config:
        show_config()
        raise typer.Exit()
    if context.invoked_subcommand is not None:
        return
    if debug:
        show_config()
        raise typer.Exit(connectivity_test())
    typer.echo(context.get_help())
    raise typer.Exit()
