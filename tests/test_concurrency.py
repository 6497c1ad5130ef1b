"""`unless`: the work's value or INTERRUPTED, the winner's exception raised, the loser cancelled and awaited."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator

import pytest

from aitbc.concurrency import INTERRUPTED, unless


class Tracked:
    """A coroutine that waits on an event, and records whether it was cancelled and ran its cleanup."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.go = asyncio.Event()
        self.cancelled = False
        self.cleaned_up = False

    async def run(self, value: object = None, error: BaseException | None = None) -> object:
        self.started.set()
        try:
            await self.go.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits: it must be awaited to finish
            self.cleaned_up = True
        if error is not None:
            raise error
        return value


@pytest.fixture(autouse=True)
def asyncio_complains_of_nothing(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No "Task was destroyed but it is pending!", no "Task exception was never retrieved"."""
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        yield
        gc.collect()
    records = caplog.get_records("call") + caplog.get_records("teardown")
    assert not [record.getMessage() for record in records if record.name == "asyncio"]


def _leftover_tasks() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_the_work_wins_with_its_value_and_the_interrupt_is_cancelled_and_awaited() -> None:
    work, interrupt = Tracked(), Tracked()
    work.go.set()
    assert await unless(work.run("answer"), interrupt.run()) == "answer"
    assert interrupt.cancelled and interrupt.cleaned_up
    assert not _leftover_tasks()


async def test_the_interrupt_wins_and_the_work_is_cancelled_and_awaited() -> None:
    work, interrupt = Tracked(), Tracked()
    interrupt.go.set()
    assert await unless(work.run("answer"), interrupt.run()) is INTERRUPTED
    assert work.cancelled and work.cleaned_up
    assert not _leftover_tasks()


async def test_the_winning_works_exception_is_raised() -> None:
    work, interrupt = Tracked(), Tracked()
    work.go.set()
    with pytest.raises(LookupError, match="the work broke"):
        await unless(work.run(error=LookupError("the work broke")), interrupt.run())
    assert interrupt.cancelled and interrupt.cleaned_up
    assert not _leftover_tasks()


async def test_the_winning_interrupts_exception_is_raised() -> None:
    work, interrupt = Tracked(), Tracked()
    interrupt.go.set()
    with pytest.raises(ValueError, match="the interrupt broke"):
        await unless(work.run(), interrupt.run(error=ValueError("the interrupt broke")))
    assert work.cancelled and work.cleaned_up
    assert not _leftover_tasks()


async def test_the_losers_exception_while_being_cancelled_is_not_raised() -> None:
    async def fails_when_cancelled() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("broke on the way out") from None

    assert await unless(fails_when_cancelled(), asyncio.sleep(0)) is INTERRUPTED
    assert await unless(asyncio.sleep(0, "done"), fails_when_cancelled()) == "done"
    assert not _leftover_tasks()


async def test_when_both_are_done_the_work_wins() -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    closed = asyncio.Event()
    queue.put_nowait("event")
    closed.set()
    assert await unless(queue.get(), closed.wait()) == "event"


async def test_a_queue_item_is_not_lost_when_the_interrupt_wins() -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    closed = asyncio.Event()
    closed.set()
    assert await unless(queue.get(), closed.wait()) is INTERRUPTED
    queue.put_nowait("later")
    assert queue.get_nowait() == "later"
    assert not _leftover_tasks()


async def test_a_timeout_cancels_and_awaits_both() -> None:
    work, interrupt = Tracked(), Tracked()
    assert await unless(work.run(), interrupt.run(), timeout=0) is INTERRUPTED
    assert work.cancelled and work.cleaned_up
    assert interrupt.cancelled and interrupt.cleaned_up
    assert not _leftover_tasks()


async def test_a_shielded_work_keeps_running_after_the_interrupt() -> None:
    work, interrupt = Tracked(), Tracked()
    task = asyncio.create_task(work.run("still running"))
    interrupt.go.set()
    assert await unless(asyncio.shield(task), interrupt.run()) is INTERRUPTED
    assert not task.done()
    work.go.set()
    assert await task == "still running"


async def test_cancelling_the_caller_cancels_and_awaits_both() -> None:
    work, interrupt = Tracked(), Tracked()
    waiting = asyncio.create_task(unless(work.run(), interrupt.run()))
    await work.started.wait()
    await interrupt.started.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert work.cancelled and work.cleaned_up
    assert interrupt.cancelled and interrupt.cleaned_up
    assert not _leftover_tasks()
