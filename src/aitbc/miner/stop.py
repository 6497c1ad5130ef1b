"""Why and when a job must stop early: cancelled by the client, timed out, lease lost, miner shutting down.

Set from the agent's event loop; runtimes wait on it there, or poll it from a worker thread."""

from __future__ import annotations

import asyncio
import enum
import threading


class StopReason(enum.StrEnum):
    CANCELED = "canceled"
    TIMEOUT = "timeout"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"
    LIMIT = "limit"  # the job hit one of its limits (processes, memory, CPU time, disk)


class StopSignal:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._flag = threading.Event()
        self.reason: StopReason | None = None

    def request(self, reason: StopReason) -> None:
        """The first reason wins: a cancel that turns into a shutdown is still a cancel."""
        if self.reason is None:
            self.reason = reason
        self._flag.set()
        self._event.set()

    @property
    def requested(self) -> bool:
        """Safe to read from any thread."""
        return self._flag.is_set()

    async def wait(self) -> StopReason:
        await self._event.wait()
        assert self.reason is not None
        return self.reason
