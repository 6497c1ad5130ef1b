"""Noticing a client that hangs up while its request is held (a miner's claim, a client's `Prefer: wait`): the
held work races this event, so a hang-up ends it at once instead of when its time runs out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import Request


async def _watch(request: Request, gone: asyncio.Event) -> None:
    """The body is read; the next message from the server is the client hanging up."""
    while True:
        if (await request.receive())["type"] == "http.disconnect":
            gone.set()
            return


@contextlib.asynccontextmanager
async def hang_up_watch(request: Request) -> AsyncIterator[asyncio.Event]:
    """An event set when the client of `request` hangs up, while the block runs (its body read already)."""
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch(request, gone))
    try:
        yield gone
    finally:
        watcher.cancel()
