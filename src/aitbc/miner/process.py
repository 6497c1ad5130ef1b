"""Run one job's process in its own process group, stream its output line by line, and stop the whole group
at once when asked: SIGTERM to the group, SIGKILL after a short grace. Processes the job left behind in its
group are killed when it ends, so nothing of a job outlives it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aitbc.concurrency import INTERRUPTED, unless
from aitbc.miner.stop import StopReason, StopSignal

READ_CHUNK = 64 * 1024
MAX_LINE_BYTES = 1024 * 1024
PIPE_DRAIN_SECONDS = 2.0
LineHandler = Callable[[str], None]


@dataclass(frozen=True)
class ProcessOutcome:
    exit_code: int
    stopped: StopReason | None
    wall_seconds: float
    pid: int


async def _pump(stream: asyncio.StreamReader | None, handle: LineHandler) -> None:
    """Split a pipe into lines without a line-length limit turning into an error: very long lines are cut."""
    if stream is None:
        return
    buffer = b""
    while chunk := await stream.read(READ_CHUNK):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            handle(line.decode("utf-8", errors="replace"))
        while len(buffer) > MAX_LINE_BYTES:
            handle(buffer[:MAX_LINE_BYTES].decode("utf-8", errors="replace"))
            buffer = buffer[MAX_LINE_BYTES:]
    if buffer:
        handle(buffer.decode("utf-8", errors="replace"))


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stop: StopSignal,
    deadline: float,
    on_stdout: LineHandler,
    on_stderr: LineHandler,
    kill_grace_seconds: float = 1.0,
) -> ProcessOutcome:
    """Run `argv` until it exits, `stop` is requested, or `deadline` (monotonic) passes (→ TIMEOUT)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    pgid = process.pid
    pumps = [
        asyncio.create_task(_pump(process.stdout, on_stdout)),
        asyncio.create_task(_pump(process.stderr, on_stderr)),
    ]
    exited = asyncio.create_task(process.wait())
    stopped: StopReason | None = None
    try:
        timeout = max(0.0, deadline - time.monotonic())
        if await unless(asyncio.shield(exited), stop.wait(), timeout=timeout) is INTERRUPTED:
            stop.request(StopReason.TIMEOUT)  # unless stopped already: the first reason is kept
            stopped = stop.reason
            _signal_group(pgid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), timeout=kill_grace_seconds)
            _signal_group(pgid, signal.SIGKILL)
        exit_code = await exited
    finally:
        _signal_group(pgid, signal.SIGKILL)  # whatever the job left running in its group
        if not exited.done():
            exited.cancel()
    _, unfinished = await asyncio.wait(pumps, timeout=PIPE_DRAIN_SECONDS)
    for pump in unfinished:  # a process that escaped the group still holds the pipe: stop reading it
        pump.cancel()
    return ProcessOutcome(exit_code=exit_code, stopped=stopped, wall_seconds=time.monotonic() - started, pid=pgid)
