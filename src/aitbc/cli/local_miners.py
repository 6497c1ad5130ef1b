"""The local miners `aitbc serve --miners N` runs beside the coordinator: their key, their processes, and
stopping them first so they can hand their running jobs back while the coordinator still answers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the server stack loads when `serve` runs
    from types import FrameType

    import uvicorn

    from aitbc.settings import Settings

LOCAL_MINER_KEY_FILE = "local-miner.key"
LOCAL_MINER_ACCOUNT = "local-miners"
LOCAL_MINER_STOP_SECONDS = 15.0
LOCAL_MINER_SHUTDOWN_GRACE_SECONDS = 3.0


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

    import uvicorn

    processes = start_local_miners(count, settings, asyncio.run(local_miner_key(settings)))

    class ServerWithMiners(uvicorn.Server):
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
