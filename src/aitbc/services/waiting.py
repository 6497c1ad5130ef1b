"""Holding a request until its job ends (`Prefer: wait=N`): the caller sleeps on the event hub, subscribed to
that one job's events, and wakes when one says the job ended, when its time is up, or when its client hangs
up; no one polls the database. The subscription is taken before the job is read again, so an end that
happens between the caller's read and the subscription is seen by that read; it is always given back, however
the wait ends (a cancelled request included), so a hung-up client leaves nothing behind."""

from __future__ import annotations

import asyncio

from aitbc.concurrency import INTERRUPTED, unless
from aitbc.domain.job import Job, JobStatus
from aitbc.storage.interfaces import JobReadModel
from aitbc.streaming.hub import EventHub, Subscription


async def _ended(subscription: Subscription) -> bool:
    """Until an event of the job says it ended (True), or the subscription closes (False: it fell behind, or
    the hub is stopping)."""
    while (event := await subscription.next_event()) is not None:
        if JobStatus(event.status).is_terminal:
            return True
    return False


class JobWaiter:
    def __init__(self, reads: JobReadModel, hub: EventHub) -> None:
        self._reads = reads
        self._hub = hub

    async def until_ended(self, job: Job, seconds: float, gone: asyncio.Event | None = None) -> Job:
        """The job once it has ended, or as it stands after `seconds`, or when `gone` is set (the client hung up)
        or the coordinator stops."""
        if job.is_terminal or seconds <= 0 or self._hub.stopping:
            return job
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        hung_up = gone or asyncio.Event()
        subscription = self._hub.subscribe(job.account_id, job.id)
        try:
            current = await self._reads.get_job(job.id) or job
            while not current.is_terminal:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                ended = await unless(_ended(subscription), hung_up.wait(), timeout=remaining)
                if hung_up.is_set():
                    return current  # nobody is left to answer
                if ended is INTERRUPTED or self._hub.stopping:
                    break
                if not ended:  # it fell behind a burst of the job's events: subscribe again, read again
                    self._hub.unsubscribe(subscription)
                    subscription = self._hub.subscribe(job.account_id, job.id)
                current = await self._reads.get_job(job.id) or current
            else:
                return current
            return await self._reads.get_job(job.id) or current  # the time is up: the job as it stands now
        finally:
            self._hub.unsubscribe(subscription)
