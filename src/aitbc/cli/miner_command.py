"""`aitbc miner run`: a miner agent on this machine."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from aitbc.cli.common import UrlOption, console, errors, fail, handles_errors
from aitbc.cli.serve_command import parse_size
from aitbc.protocol.regions import REGION_MAX_LENGTH, REGION_PATTERN
from aitbc.sdk.config import read_profile, resolve_connection

if TYPE_CHECKING:  # imported where used: `aitbc client …` should not pay for the miner's or the server's modules
    from aitbc.miner.agent import Agent

app = typer.Typer(help="Run a miner: claim jobs from a coordinator and run them.", no_args_is_help=True)


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


def checked_region(region: str | None) -> str | None:
    """The region as the coordinator stores it (lower case), refused here, before the miner starts, if the
    coordinator would refuse it."""
    if region is None:
        return None
    if not re.fullmatch(REGION_PATTERN, region) or len(region) > REGION_MAX_LENGTH:
        raise ValueError(
            f"--region {region!r}: use letters, digits, '-', '_' and '.', starting with a letter or digit, "
            f"at most {REGION_MAX_LENGTH} characters (like us-west)"
        )
    return region.lower()


def read_key_file(path: Path) -> str:
    """The key in `path` (`-`: the first line of stdin, how `aitbc serve --miners N` hands it over a pipe)."""
    if str(path) == "-":
        return sys.stdin.readline().strip()
    try:
        if path.stat().st_mode & 0o077:
            errors.print(f"[yellow]Warning:[/] {escape(str(path))} is readable by other users: chmod 600 it.")
        return path.read_text().strip()
    except OSError as error:
        raise ValueError(f"cannot read --api-key-file {path}: {error.strerror or error}") from error


def _miner_key(api_key: str | None, api_key_file: Path | None) -> str | None:
    """From a file, then the command line (warned: every process on the machine can read it in
    /proc/PID/cmdline), then AITBC_API_KEY (taken out of the environment, so nothing this miner starts inherits
    it), then the profile."""
    from_environment = os.environ.pop("AITBC_API_KEY", None)
    if api_key_file is not None:
        return read_key_file(api_key_file) or None
    if api_key:
        errors.print(
            "[yellow]Warning:[/] --api-key on the command line is visible to every process on this machine "
            "(/proc/PID/cmdline); use --api-key-file PATH or AITBC_API_KEY instead.",
            highlight=False,
        )
        return api_key
    return from_environment or read_profile().get("miner_api_key") or None


@app.command("run")
@handles_errors
def run(
    url: UrlOption = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Miner API key; visible to other processes: prefer the next two.")
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option("--api-key-file", help="File holding the miner API key (-: stdin); else AITBC_API_KEY."),
    ] = None,
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
    region: Annotated[
        str | None,
        typer.Option("--region", help="Where this miner is (us-west), shown and filtered on in the marketplace."),
    ] = None,
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
    max_processes: Annotated[
        int, typer.Option("--max-processes", min=8, help="Processes (and threads) a job may have at once.")
    ] = 1024,
    max_memory: Annotated[
        int, typer.Option("--max-memory", "--memory-mb", min=16, help="Memory of a job, MiB (its tmpfs folder counts).")
    ] = 4096,
    max_cpu_seconds: Annotated[
        int | None,
        typer.Option("--max-cpu-seconds", min=1, help="CPU time of a job, all its processes (default: its timeout)."),
    ] = None,
    max_disk: Annotated[
        int, typer.Option("--max-disk", "--file-size-mb", min=1, help="Disk a job may fill in its folder, MiB.")
    ] = 4096,
    max_open_files: Annotated[
        int, typer.Option("--max-open-files", "--open-files", min=16, help="Open files per job process.")
    ] = 1024,
    job_network: Annotated[
        bool, typer.Option("--job-network", help="Let jobs reach the network (default: loopback only).")
    ] = False,
    sandbox_dir: Annotated[
        Path | None,
        typer.Option(
            "--sandbox-dir",
            help="Where job folders live while they run (default: WORK_DIR/sandboxes, or /var/lib/aitbc-sandboxes "
            "for a root miner whose work dir other users cannot reach).",
        ),
    ] = None,
    run_as: Annotated[
        str | None,
        typer.Option("--run-as", help="Host user jobs run as (the miner must be root; default for root: nobody)."),
    ] = None,
    model_cache: Annotated[
        str | None,
        typer.Option(
            "--model-cache",
            help="Memory the AI workers' loaded models may take in all, e.g. 4GiB; the least recently used are "
            "unloaded to stay within it (default: half the RAM, or half the GPUs' memory).",
        ),
    ] = None,
    max_models: Annotated[
        int | None,
        typer.Option(
            "--max-models",
            min=1,
            help="Loaded models kept at most, all workers together (default: no cap, or 4 where the RAM "
            "cannot be read).",
        ),
    ] = None,
    parent_pid: Annotated[int | None, typer.Option("--parent-pid", hidden=True)] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")] = "info",
) -> None:
    """Register with the coordinator and run jobs until stopped (SIGTERM: finish or hand back, then exit)."""
    from aitbc.miner.agent import Agent
    from aitbc.miner.config import JobLimits, MinerConfig
    from aitbc.miner.gpus import resolve_gpus
    from aitbc.miner.runtimes.registry import build_runtimes

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    coordinator_url = resolve_connection(url).url
    key = _miner_key(api_key, api_key_file)
    if not key:
        fail(
            "no miner API key: pass --api-key-file PATH or set AITBC_API_KEY "
            "(create one: aitbc admin keys create --role miner)"
        )
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
        region=checked_region(region),
        models=parse_models(model or []),
        ollama_url=ollama_url,
        drain=drain,
        claim_wait_seconds=claim_wait,
        kill_grace_seconds=kill_grace,
        shutdown_grace_seconds=shutdown_grace,
        job_limits=JobLimits(
            max_processes=max_processes,
            memory_mb=max_memory,
            cpu_seconds=max_cpu_seconds,
            disk_mb=max_disk,
            open_files=max_open_files,
        ),
        command_user=run_as,
        job_network=job_network,
        sandbox_dir=sandbox_dir.expanduser().resolve() if sandbox_dir else None,
        parent_pid=parent_pid,
        model_cache_bytes=parse_size(model_cache, "--model-cache") if model_cache is not None else None,
        max_models=max_models,
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
        f"GPUs: {len(config.gpus) or 'none'}  region: {config.region or '-'}  work dir: {config.work_dir}",
        highlight=False,
    )
    asyncio.run(_run_agent(Agent(config, built)))


async def _run_agent(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.request_stop)
    await agent.run()
