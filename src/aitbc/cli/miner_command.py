"""`aitbc miner run`: a miner agent on this machine; and the local miners `aitbc serve --miners N` starts."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from aitbc.cli.common import KeyOption, UrlOption, console, errors, fail, handles_errors
from aitbc.sdk.config import read_profile, resolve_connection

if TYPE_CHECKING:  # imported where used: `aitbc client …` should not pay for the miner's or the server's modules
    from types import FrameType

    import uvicorn

    from aitbc.miner.agent import Agent
    from aitbc.settings import Settings

app = typer.Typer(help="Run a miner: claim jobs from a coordinator and run them.", no_args_is_help=True)

LOCAL_MINER_KEY_FILE = "local-miner.key"
LOCAL_MINER_ACCOUNT = "local-miners"
LOCAL_MINER_STOP_SECONDS = 15.0
LOCAL_MINER_SHUTDOWN_GRACE_SECONDS = 3.0


def default_work_dir(name: str) -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "aitbc" / "miners" / name


def parse_models(values: list[str]) -> dict[str, Path]:
    models: dict[str, Path] = {}
    for value in values:
        name, separator, path = value.partition("=")
        if not separator or not name.strip() or not path.strip():
            raise ValueError(f"--model wants NAME=PATH, got {value!r}")
        folder = Path(path.strip()).expanduser().resolve()
        if not folder.is_dir():
            raise ValueError(f"--model {name}: {folder} is not a folder")
        models[name.strip()] = folder
    return models


def _miner_key(api_key: str | None) -> str | None:
    return api_key or os.environ.get("AITBC_API_KEY") or read_profile().get("miner_api_key") or None


@app.command("run")
@handles_errors
def run(
    url: UrlOption = None,
    api_key: KeyOption = None,
    name: Annotated[str | None, typer.Option("--name", help="This miner's name (default: the host name).")] = None,
    runtimes: Annotated[
        str | None,
        typer.Option(
            "--runtimes",
            help="Comma-separated: command, embedding, text-generation, reencode (default: all that can run here).",
        ),
    ] = None,
    allow_command: Annotated[
        bool, typer.Option("--allow-command", help="Run `command` jobs (other people's scripts).")
    ] = False,
    max_jobs: Annotated[int, typer.Option("--max-jobs", min=1, max=64, help="Jobs run at once.")] = 1,
    gpus: Annotated[
        str, typer.Option("--gpus", help="auto (nvidia-smi), none, or a spec like a100:80x2,rtx3090:24.")
    ] = "auto",
    work_dir: Annotated[
        Path | None,
        typer.Option("--work-dir", help="State and job folders (default ~/.local/state/aitbc/miners/NAME)."),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="NAME=PATH of a local model folder; repeatable.")
    ] = None,
    ollama_url: Annotated[
        str | None, typer.Option("--ollama-url", help="An Ollama server whose models to serve.")
    ] = None,
    drain: Annotated[bool, typer.Option("--drain", help="Exit when no job is left for this miner.")] = False,
    claim_wait: Annotated[float, typer.Option("--claim-wait", min=0, max=60, help="Long-poll wait, seconds.")] = 20.0,
    kill_grace: Annotated[
        float, typer.Option("--kill-grace", min=0, help="Seconds between SIGTERM and SIGKILL on cancel.")
    ] = 1.0,
    shutdown_grace: Annotated[
        float, typer.Option("--shutdown-grace", min=0, help="On SIGTERM, seconds to let running jobs finish.")
    ] = 10.0,
    memory_mb: Annotated[int, typer.Option("--memory-mb", min=16, help="Memory limit of a command job.")] = 4096,
    file_size_mb: Annotated[
        int, typer.Option("--file-size-mb", min=1, help="Largest file a command job writes.")
    ] = 1024,
    open_files: Annotated[int, typer.Option("--open-files", min=16, help="Open files of a command job.")] = 1024,
    run_as: Annotated[
        str | None,
        typer.Option("--run-as", help="Run command jobs as this unprivileged user (the miner must run as root)."),
    ] = None,
    parent_pid: Annotated[int | None, typer.Option("--parent-pid", hidden=True)] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")] = "info",
) -> None:
    """Register with the coordinator and run jobs until stopped (SIGTERM: finish or hand back, then exit)."""
    from aitbc.miner.agent import Agent
    from aitbc.miner.config import CommandLimits, MinerConfig
    from aitbc.miner.gpus import resolve_gpus
    from aitbc.miner.runtimes.registry import build_runtimes

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    coordinator_url = resolve_connection(url).url
    key = _miner_key(api_key)
    if not key:
        fail("no miner API key: pass --api-key or set AITBC_API_KEY (create one: aitbc admin keys create --role miner)")
    miner_name = name or socket.gethostname()
    requested = tuple(r.strip() for r in runtimes.split(",") if r.strip()) if runtimes else None
    if requested and "command" in requested and not allow_command:
        fail("the command runtime runs other people's scripts: add --allow-command to offer it")
    config = MinerConfig(
        url=coordinator_url,
        api_key=key,
        name=miner_name,
        work_dir=(work_dir or default_work_dir(miner_name)).expanduser().resolve(),
        runtimes=requested,
        allow_command=allow_command,
        max_jobs=max_jobs,
        gpus=tuple(resolve_gpus(gpus)),
        models=parse_models(model or []),
        ollama_url=ollama_url,
        drain=drain,
        claim_wait_seconds=claim_wait,
        kill_grace_seconds=kill_grace,
        shutdown_grace_seconds=shutdown_grace,
        command_limits=CommandLimits(memory_mb=memory_mb, file_size_mb=file_size_mb, open_files=open_files),
        command_user=run_as,
        parent_pid=parent_pid,
    )
    built, missing = build_runtimes(config)
    for runtime_name, why in missing.items():
        if requested:
            fail(f"runtime {runtime_name} cannot run here: {why}")
        errors.print(f"[dim]runtime {runtime_name} left out: {escape(why)}[/]", highlight=False)
    if not built:
        fail("no runtime can run here: add --allow-command, or install the AI extra (pip install 'aitbc[ai]')")
    console.print(
        f"Miner [bold]{miner_name}[/] → {config.url}  runtimes: {', '.join(sorted(built))}  "
        f"GPUs: {len(config.gpus) or 'none'}  work dir: {config.work_dir}",
        highlight=False,
    )
    asyncio.run(_run_agent(Agent(config, built)))


async def _run_agent(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.request_stop)
    await agent.run()


# -- local miners for `aitbc serve --miners N` -------------------------------------------------------


async def local_miner_key(settings: Settings) -> str:
    """The miner key local miners use: made once, kept in the data folder (owner-only)."""
    from aitbc.domain.plans import Role
    from aitbc.wiring import open_coordinator

    path = settings.data_dir / LOCAL_MINER_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    coordinator = await open_coordinator(settings)
    try:
        created = await coordinator.accounts.create_key(LOCAL_MINER_ACCOUNT, Role.MINER)
    finally:
        await coordinator.close()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(created.secret + "\n")
    return created.secret


def start_local_miners(count: int, settings: Settings, api_key: str) -> list[subprocess.Popen[bytes]]:
    """N miner processes next to the coordinator: command runtime allowed, AI runtimes when installed."""
    processes: list[subprocess.Popen[bytes]] = []
    environment = {**os.environ, "AITBC_API_KEY": api_key}
    for number in range(1, count + 1):
        name = f"local-{number}"
        command = [
            sys.executable,
            "-c",
            "from aitbc.cli.main import main; main()",
            "miner",
            "run",
            "--url",
            f"http://127.0.0.1:{settings.port}",
            "--name",
            name,
            "--allow-command",
            "--gpus",
            "auto",
            "--work-dir",
            str(settings.data_dir / "miners" / name),
            "--shutdown-grace",
            str(LOCAL_MINER_SHUTDOWN_GRACE_SECONDS),  # the coordinator is going down too: hand back soon
            "--parent-pid",
            str(os.getpid()),
            "--log-level",
            "warning",
        ]
        processes.append(subprocess.Popen(command, env=environment))
    return processes


def serve_with_local_miners(count: int, settings: Settings, server_config: uvicorn.Config) -> None:
    """Run the coordinator with N local miners beside it. On SIGTERM or Ctrl-C the miners are stopped first,
    while the coordinator still answers, so they can hand their running jobs back; then the server stops."""
    import threading

    from aitbc.api.server import CoordinatorServer

    processes = start_local_miners(count, settings, asyncio.run(local_miner_key(settings)))

    class ServerWithMiners(CoordinatorServer):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit or any(t.name == "stop-local-miners" for t in threading.enumerate()):
                super().handle_exit(sig, frame)  # a second signal: stop now
                return

            def stop_then_exit() -> None:
                stop_local_miners(processes)
                super(ServerWithMiners, self).handle_exit(sig, frame)

            threading.Thread(target=stop_then_exit, name="stop-local-miners", daemon=True).start()

    try:
        ServerWithMiners(server_config).run()
    finally:
        stop_local_miners(processes)


def stop_local_miners(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=LOCAL_MINER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
