"""The local miners `aitbc serve --miners N` runs beside the coordinator: their key, their processes, and
stopping them first so they can hand their running jobs back while the coordinator still answers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aitbc.domain.errors import NotFound

if TYPE_CHECKING:  # the server stack loads when `serve` runs
    from types import FrameType

    import uvicorn

    from aitbc.settings import Settings

LOCAL_MINER_ACCOUNT = "local-miners"
LOCAL_MINER_KEY_NAME = "local-miners-serve"
OLD_KEY_FILE = "local-miner.key"  # where an earlier version kept the key, in the data folder
LOCAL_MINER_REGION = "local"  # the marketplace's region of the miners beside the coordinator
LOCAL_MINER_STOP_SECONDS = 15.0
LOCAL_MINER_SHUTDOWN_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class LocalMinerOptions:
    count: int
    allow_command: bool = False


async def local_miner_key(settings: Settings) -> str:
    """A fresh miner key for this run's local miners, kept nowhere but in memory and the miners' pipes: the keys
    earlier runs made are revoked (their miners stopped with them), so no usable miner key is left at rest."""
    from aitbc.domain.plans import Role
    from aitbc.wiring import coordinator_session

    async with coordinator_session(settings) as coordinator:
        with contextlib.suppress(NotFound):  # the account appears with its first key
            for key in await coordinator.accounts.list_keys(LOCAL_MINER_ACCOUNT):
                if key.revoked_at is None:
                    await coordinator.accounts.revoke_key(key.id)
        created = await coordinator.accounts.create_key(LOCAL_MINER_ACCOUNT, Role.MINER, key_name=LOCAL_MINER_KEY_NAME)
    (settings.data_dir / OLD_KEY_FILE).unlink(missing_ok=True)
    return created.secret


def local_miner_work_dir(data_dir: Path, name: str, state_home: Path | None = None) -> Path:
    """Outside the coordinator's data folder (a job must never be near the database or the signing key), under
    $XDG_STATE_HOME, one set per coordinator data folder so two coordinators on one machine keep theirs apart."""
    base = state_home or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    data_folder = hashlib.sha256(str(data_dir.expanduser().resolve()).encode()).hexdigest()[:12]
    return base / "aitbc" / "local-miners" / data_folder / name


def start_local_miners(options: LocalMinerOptions, settings: Settings, api_key: str) -> list[subprocess.Popen[bytes]]:
    """N miner processes next to the coordinator: AI runtimes when installed, `command` only when the operator
    allowed it. Each gets the key on a pipe to its stdin: not on its command line, not in its environment
    (/proc/PID/environ), not in a file."""
    from aitbc.private_files import private_folder

    processes: list[subprocess.Popen[bytes]] = []
    environment = {name: value for name, value in os.environ.items() if name != "AITBC_API_KEY"}
    for number in range(1, options.count + 1):
        name = f"local-{number}"
        work_dir = local_miner_work_dir(settings.data_dir, name)
        private_folder(work_dir)
        command = [
            sys.executable,
            "-c",
            "from aitbc.cli.main import main; main()",
            "miner",
            "run",
            "--url",
            f"http://127.0.0.1:{settings.port}",
            "--api-key-file",
            "-",
            "--name",
            name,
            *(["--allow-command"] if options.allow_command else []),
            "--gpus",
            "auto",
            "--region",
            LOCAL_MINER_REGION,
            "--work-dir",
            str(work_dir),
            "--shutdown-grace",
            str(LOCAL_MINER_SHUTDOWN_GRACE_SECONDS),  # the coordinator is going down too: hand back soon
            "--parent-pid",
            str(os.getpid()),
            "--log-level",
            "warning",
        ]
        process = subprocess.Popen(command, env=environment, stdin=subprocess.PIPE)
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError), process.stdin:  # a miner that died at once says why itself
            process.stdin.write(api_key.encode() + b"\n")
        processes.append(process)
    return processes


def serve_with_local_miners(options: LocalMinerOptions, settings: Settings, server_config: uvicorn.Config) -> None:
    """Run the coordinator with N local miners beside it. On SIGTERM or Ctrl-C the miners are stopped first,
    while the coordinator still answers, so they can hand their running jobs back; then the server stops."""
    import threading

    from aitbc.api.server import CoordinatorServer

    processes = start_local_miners(options, settings, asyncio.run(local_miner_key(settings)))

    class ServerWithMiners(CoordinatorServer):  # on stop, it first releases held long polls
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
