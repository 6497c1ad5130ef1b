"""Waiting for one thing unless another comes first, in one place.

"Read the next event unless the subscription closes", "claim unless the miner hangs up", "run the job unless
it is stopped": each is a race of two awaitables. Written out by hand with `asyncio.wait(FIRST_COMPLETED)`,
every copy has to cancel the loser, await it (or asyncio reports "Task was destroyed but it is pending!"),
clean up when the caller itself is cancelled, and pass on the winner's exception; this module does it once.
It sits outside the layers so that every layer may use it, and imports nothing of ours.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Sequence
from typing import Any, Final, TypeVar

T = TypeVar("T")


class Interrupted(enum.Enum):
    """What `unless` returns when the work did not finish: the interrupt came first, or the time ran out."""

    INTERRUPTED = "interrupted"


INTERRUPTED: Final = Interrupted.INTERRUPTED


async def unless(work: Awaitable[T], interrupt: Awaitable[object], *, timeout: float | None = None) -> T | Interrupted:
    """Await `work` unless `interrupt` finishes first (or `timeout` seconds pass): the work's value, or
    `INTERRUPTED`. Whichever finishes first wins and its exception, if any, is raised; the other is cancelled
    and awaited before this returns, and so are both when the caller is cancelled. If both finish together
    the work wins, and a work that still returns a value while being cancelled returns it, so a value it has
    taken (an item off a queue) is never dropped. Wrap `work` in `asyncio.shield` to keep it running after an
    interrupt."""
    working = asyncio.ensure_future(work)
    try:
        interrupting = asyncio.ensure_future(interrupt)
    except BaseException:
        await _cancel_and_wait([working])
        raise
    racers = [working, interrupting]
    try:
        done, _ = await asyncio.wait(racers, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:  # the caller's cancellation too: nothing is left pending
        await _cancel_and_wait(racers)
    if working in done:
        _retrieve(interrupting)
        return working.result()
    if interrupting in done and (error := _exception(interrupting)) is not None:
        _retrieve(working)
        raise error
    if _finished_with_value(working):  # it finished as it was being cancelled: its value is not dropped
        return working.result()
    _retrieve(working)
    return INTERRUPTED


async def _cancel_and_wait(tasks: Sequence[asyncio.Future[Any]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


def _exception(task: asyncio.Future[Any]) -> BaseException | None:
    return None if task.cancelled() else task.exception()


def _finished_with_value(task: asyncio.Future[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark the loser's exception as seen: it lost, and asyncio would otherwise log it as never retrieved."""
    if task.done():
        _exception(task)
