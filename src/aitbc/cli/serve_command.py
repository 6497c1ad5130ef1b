"""`aitbc serve`: run the coordinator; on an empty data folder, create the first keys and a CLI profile."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aitbc.cli.common import console, handles_errors
from aitbc.cli.serve_profile import announce_existing, announce_saved, coordinator_origin
from aitbc.settings import Settings, default_data_dir

if TYPE_CHECKING:  # the server stack loads when `serve` runs, not for every `aitbc client …` command
    from aitbc.services.accounts import CreatedKey


class SqliteSynchronous(StrEnum):
    """`--sqlite-synchronous`: SQLite's PRAGMA synchronous for the coordinator's connections."""

    FULL = "full"
    NORMAL = "normal"


# Held requests (long polls, WebSockets) get this long to finish when the coordinator stops.
GRACEFUL_SHUTDOWN_SECONDS = 5


async def _bootstrap(settings: Settings) -> list[CreatedKey]:
    from aitbc.wiring import coordinator_session

    async with coordinator_session(settings) as coordinator:
        return await coordinator.accounts.bootstrap()


def parse_size(text: str, option: str) -> int:
    """A size as people type it (`10GiB`, `500MB`, `1048576`), as pydantic's ByteSize reads it."""
    from pydantic import ByteSize, TypeAdapter, ValidationError

    try:
        size = int(TypeAdapter(ByteSize).validate_python(text))
    except ValidationError as error:
        raise typer.BadParameter(
            f"{text!r} is not a size: use a number and a unit, like 10GiB or 500MB", param_hint=option
        ) from error
    if size <= 0:
        raise typer.BadParameter("give a size above zero", param_hint=option)
    return size


MINER_LOST_AFTER_SECONDS = Settings.miner_lost_after_seconds


def resolve_miner_lost_after(given: int | None, lease_seconds: int) -> int:
    """`--miner-lost-after`, checked against the lease; when not given, 15 s, or the lease when that is shorter
    (a miner is then lost when its lease ends, as before there was a lost window)."""
    if given is None:
        return min(MINER_LOST_AFTER_SECONDS, lease_seconds)
    if given <= 0:
        raise typer.BadParameter("give a number of seconds above zero", param_hint="--miner-lost-after")
    if lease_seconds <= given:
        raise typer.BadParameter(
            f"a miner lost after {given} s must be lost before its lease ends: give a --lease-seconds longer than "
            f"{given} (it is {lease_seconds}) or a shorter --miner-lost-after",
            param_hint="--miner-lost-after",
        )
    return given


@handles_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Database and results folder.")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="postgresql://… to use PostgreSQL instead of SQLite.")
    ] = None,
    sqlite_synchronous: Annotated[
        SqliteSynchronous,
        typer.Option(
            "--sqlite-synchronous",
            envvar="AITBC_SQLITE_SYNCHRONOUS",
            help="SQLite: full fsyncs each commit (an acknowledged job survives a power loss); normal is faster "
            "but can lose the last commits on power loss.",
        ),
    ] = SqliteSynchronous.FULL,
    public_url: Annotated[str | None, typer.Option("--public-url", help="URL clients reach this server at.")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")] = "info",
    miners: Annotated[int, typer.Option("--miners", min=0, help="Also run N local miners.")] = 0,
    allow_command: Annotated[
        bool,
        typer.Option("--allow-command", help="Let the local miners run `command` jobs (other people's scripts)."),
    ] = False,
    lease_seconds: Annotated[int, typer.Option("--lease-seconds", min=2, help="Miner lease length.")] = 60,
    miner_lost_after: Annotated[
        int | None,
        typer.Option(
            "--miner-lost-after",
            metavar="SECONDS",
            help="A miner that misses its heartbeats this long is lost and its jobs go back to the queue (default "
            "15, or the lease when shorter; must be shorter than --lease-seconds).",
            show_default=False,
        ),
    ] = None,
    max_job_upload: Annotated[
        str,
        typer.Option(
            "--max-job-upload",
            help="Most bytes a miner may upload for one job, every attempt's files counted (e.g. 10GiB, 500MB).",
        ),
    ] = "10GiB",
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="CLI profile for a first start's keys (else `aitbc --profile`, AITBC_PROFILE, the profile already "
            "pointing at this data, `default` for the first, or one named after the data folder).",
        ),
    ] = None,
) -> None:
    """Run the coordinator (HTTP + WebSocket API, queue, leases, reaper)."""
    import uvicorn

    from aitbc.api.app import create_app
    from aitbc.api.memory import limit_malloc_arenas
    from aitbc.api.server import CoordinatorServer
    from aitbc.cli.local_miners import LocalMinerOptions, serve_with_local_miners

    limit_malloc_arenas()  # before the database threads start: their arenas would keep RSS growing
    settings = Settings(
        data_dir=(data_dir or default_data_dir()).expanduser(),
        database_url=database_url,
        sqlite_synchronous=sqlite_synchronous.value,
        host=host,
        port=port,
        public_url=public_url,
        lease_seconds=lease_seconds,
        miner_lost_after_seconds=resolve_miner_lost_after(miner_lost_after, lease_seconds),
        max_job_upload_bytes=parse_size(max_job_upload, "--max-job-upload"),
    )
    created = asyncio.run(_bootstrap(settings))
    origin, label = coordinator_origin(settings)
    if created:
        admin, user = created
        console.print("[bold green]First start:[/] created two API keys, shown only this once:")
        console.print(f"  admin  key: [bold]{admin.secret}[/]")
        console.print(f"  client key: [bold]{user.secret}[/]")
        keys = {"url": settings.base_url, "api_key": user.secret, "admin_api_key": admin.secret}
        announce_saved(keys, origin, label, profile)
    else:
        announce_existing(settings.data_dir, origin)
    console.print(f"Coordinator on [bold]{settings.base_url}[/] — API docs at {settings.base_url}/docs")
    server = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        ws_ping_interval=20,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    if miners:
        if not allow_command:
            console.print("Local miners run the AI runtimes only; add --allow-command to let them run command jobs.")
        serve_with_local_miners(LocalMinerOptions(miners, allow_command), settings, server)
    else:
        CoordinatorServer(server).run()  # uvicorn's server; on stop it first releases held long polls
