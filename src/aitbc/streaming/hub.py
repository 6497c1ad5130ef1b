"""An in-process event hub with bounded per-subscriber queues.

Publishers never block: a subscriber that falls more than its queue behind is dropped with `overflowed`
set, and resumes from the store with `since=<last seq>`. Claimers waiting on a long poll sleep on a
condition that submits and requeues notify; no one polls the database in a loop.

When the coordinator stops, `close()` ends every subscription and wakes every long poll, so held requests
answer at once instead of being cut off when the server's shutdown grace runs out.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aitbc.concurrency import INTERRUPTED, unless
from aitbc.domain.events import JobEvent
from aitbc.domain.job import Job

DEFAULT_QUEUE_SIZE = 1000
ANNOUNCEMENTS_KEPT = 256  # wake-ups remembered with their jobs, for claimers that wake late


@dataclass(eq=False)
class Subscription:
    account_id: str | None
    job_id: str | None
    queue: asyncio.Queue[JobEvent] = field(default_factory=lambda: asyncio.Queue(DEFAULT_QUEUE_SIZE))
    overflowed: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, event: JobEvent) -> bool:
        if self.account_id is not None and event.account_id != self.account_id:
            return False
        return self.job_id is None or event.job_id == self.job_id

    async def next_event(self) -> JobEvent | None:
        """The next event, or None once the subscription is closed (dropped for falling behind, or the hub
        stopped)."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        if self.closed.is_set():
            return None
        event = await unless(self.queue.get(), self.closed.wait())
        return None if event is INTERRUPTED else event


class Wakeup(asyncio.Event):
    """An event that counts who is waiting on it, so a held long poll can be seen (a readiness signal)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0

    async def wait(self) -> Literal[True]:
        self.waiting += 1
        try:
            return await super().wait()
        finally:
            self.waiting -= 1


class Relay(Protocol):
    """Carries what happens on this replica to the others (see `streaming.postgres_relay`)."""

    def send_event(self, event: JobEvent) -> None: ...

    def send_work(self) -> None: ...

    def send_miner(self, miner_id: str) -> None: ...

    def send_principals(self) -> None: ...

    def send_miner_seen(self, record: Mapping[str, Any]) -> None: ...


class EventHub:
    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.relay: Relay | None = None
        self._queue_size = queue_size
        self._by_account: dict[str | None, set[Subscription]] = defaultdict(set)
        self._work = asyncio.Condition()
        self._work_version = 0
        self._announced: deque[tuple[int, tuple[Job, ...] | None]] = deque(maxlen=ANNOUNCEMENTS_KEPT)
        self._claimers_waiting = 0
        self._miner_wakeups: dict[str, Wakeup] = {}
        self._principal_listeners: list[Callable[[], None]] = []
        self._miner_seen_listeners: list[Callable[[Mapping[str, Any]], None]] = []
        self._missed_listeners: list[Callable[[], None]] = []
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def close(self) -> None:
        """The coordinator is stopping: end every subscription, wake every claim and heartbeat long poll."""
        self._stopping = True
        for subscriptions in list(self._by_account.values()):
            for subscription in list(subscriptions):
                self.unsubscribe(subscription)
        for wakeup in self._miner_wakeups.values():
            wakeup.set()
        await self.wake_claimers()

    def subscribe(self, account_id: str | None, job_id: str | None = None) -> Subscription:
        """A subscription to this replica's events; already closed once the hub is stopping."""
        subscription = Subscription(account_id, job_id, asyncio.Queue(self._queue_size))
        if self._stopping:
            subscription.closed.set()
            return subscription
        self._by_account[account_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscriptions = self._by_account.get(subscription.account_id)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._by_account[subscription.account_id]  # no empty set left behind per account
        subscription.closed.set()

    def publish(self, event: JobEvent) -> None:
        """Deliver to this replica's subscribers and tell the other replicas."""
        self.deliver(event)
        if self.relay is not None:
            self.relay.send_event(event)

    def deliver(self, event: JobEvent) -> None:
        """Deliver to this replica's subscribers only (an event that came from another replica)."""
        for key in (event.account_id, None):
            for subscription in list(self._by_account.get(key, ())):
                if not subscription.wants(event):
                    continue
                try:
                    subscription.queue.put_nowait(event)
                except asyncio.QueueFull:
                    subscription.overflowed = True
                    self.unsubscribe(subscription)

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._by_account.values())

    async def work_available(self, jobs: Sequence[Job] = ()) -> None:
        """Wake every claimer waiting for work (a job was submitted or requeued), here and on other replicas.
        `jobs`, when given, are all the jobs that became claimable: a claimer woken here takes them by id
        without asking the store what is queued (see `new_work`)."""
        if self.relay is not None:
            self.relay.send_work()
        await self.wake_claimers(jobs)

    async def wake_claimers(self, jobs: Sequence[Job] = ()) -> None:
        async with self._work:
            self._work_version += 1
            self._announced.append((self._work_version, tuple(jobs) or None))
            self._work.notify_all()

    def work_version(self) -> int:
        return self._work_version

    def new_work(self, seen_version: int) -> list[Job] | None:
        """Every job announced after `seen_version`, if each wake-up since then named its jobs (a submit or a
        requeue here does; a wake from another replica or a new miner does not) and none has been forgotten;
        else None, and the claimer asks the store. A hint is only a hint: the claim is still a compare-and-set."""
        since = [jobs for version, jobs in self._announced if version > seen_version]
        if len(since) != self._work_version - seen_version or any(jobs is None for jobs in since):
            return None
        return [job for jobs in since for job in jobs or ()]

    async def wait_for_work(self, seen_version: int, timeout: float) -> bool:
        """Sleep until work newer than `seen_version` is announced, or `timeout`; True if woken by work."""
        async with self._work:
            self._claimers_waiting += 1
            try:
                await asyncio.wait_for(self._work.wait_for(lambda: self._work_version != seen_version), timeout=timeout)
            except TimeoutError:
                return False
            finally:
                self._claimers_waiting -= 1
        return True

    @property
    def claimers_waiting(self) -> int:
        """How many claim long polls are asleep waiting for work."""
        return self._claimers_waiting

    def miner_wakeup(self, miner_id: str) -> Wakeup:
        """An event set when something concerns this miner (a cancel); its long polls wait on it."""
        return self._miner_wakeups.setdefault(miner_id, Wakeup())

    def heartbeats_waiting(self, miner_id: str) -> int:
        """How many of this miner's heartbeat long polls are held, waiting for a cancel."""
        wakeup = self._miner_wakeups.get(miner_id)
        return wakeup.waiting if wakeup is not None else 0

    def notify_miner(self, miner_id: str) -> None:
        self.miner_wakeup(miner_id).set()
        if self.relay is not None:
            self.relay.send_miner(miner_id)

    def wake_miner(self, miner_id: str) -> None:
        self.miner_wakeup(miner_id).set()

    def on_principals_changed(self, listener: Callable[[], None]) -> None:
        """Call `listener` (a cache of principals forgetting them) when keys or plans change anywhere."""
        self._principal_listeners.append(listener)

    def principals_changed(self) -> None:
        """A key was revoked or a plan changed here: forget cached principals here and on the other replicas."""
        self.forget_principals()
        if self.relay is not None:
            self.relay.send_principals()

    def forget_principals(self) -> None:
        """Forget cached principals on this replica only (another replica changed one)."""
        for listener in self._principal_listeners:
            listener()

    def on_miner_seen(self, listener: Callable[[Mapping[str, Any]], None]) -> None:
        """Call `listener` with a miner's record (JSON) when another replica hears from that miner."""
        self._miner_seen_listeners.append(listener)

    def miner_seen(self, record: Mapping[str, Any]) -> None:
        """This replica heard from a miner: tell the other replicas (their views of live miners)."""
        if self.relay is not None:
            self.relay.send_miner_seen(record)

    def deliver_miner_seen(self, record: Mapping[str, Any]) -> None:
        for listener in self._miner_seen_listeners:
            listener(record)

    def on_notices_missed(self, listener: Callable[[], None]) -> None:
        """Call `listener` when the relay reconnected: notices sent meanwhile were lost."""
        self._missed_listeners.append(listener)

    def notices_missed(self) -> None:
        for listener in self._missed_listeners:
            listener()
