"""A caller's event stream: the backlog after `since` from the store, then live events from the hub.

It subscribes before reading the backlog and drops anything at or below the last sequence number sent,
so nothing is missed or repeated; if the hub drops a slow subscriber, it catches up from the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aitbc.domain.events import JobEvent
from aitbc.storage.interfaces import JobEventLog
from aitbc.streaming.hub import EventHub, Subscription

BACKLOG_PAGE = 500


class EventService:
    def __init__(self, events: JobEventLog, hub: EventHub) -> None:
        self._events = events
        self._hub = hub

    async def stream(self, account_id: str, since: int | None, job_id: str | None) -> AsyncIterator[JobEvent]:
        subscription = self._hub.subscribe(account_id, job_id)
        last = since
        try:
            while True:
                if last is not None:
                    async for event in self._backlog(account_id, last, job_id):
                        last = event.seq
                        yield event
                async for event in self._live(subscription):
                    if last is not None and event.seq <= last:
                        continue
                    last = event.seq
                    yield event
                if self._hub.stopping:
                    return
                # The hub dropped us for falling behind: resubscribe and catch up from the store.
                subscription = self._hub.subscribe(account_id, job_id)
                if last is None:
                    last = 0
        finally:
            self._hub.unsubscribe(subscription)

    async def _backlog(self, account_id: str, after: int, job_id: str | None) -> AsyncIterator[JobEvent]:
        while True:
            page = await self._events.events_since(account_id, after, job_id, BACKLOG_PAGE)
            for event in page:
                yield event
            if len(page) < BACKLOG_PAGE:
                return
            after = page[-1].seq

    @staticmethod
    async def _live(subscription: Subscription) -> AsyncIterator[JobEvent]:
        while (event := await subscription.next_event()) is not None:
            yield event
