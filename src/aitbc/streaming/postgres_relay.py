"""Replicas over one PostgreSQL database share their events with LISTEN/NOTIFY.

Each replica LISTENs on four channels: job events (delivered to its WebSocket subscribers), work (wakes its
long-polling claimers), miners (wakes a miner's held heartbeat so a cancel made on any replica reaches it at
once), principals (a key revoked or a plan changed: forget cached principals) and live miners (a miner
registered or was heard from: the record each replica's in-memory view of live miners keeps, so no replica
queries the miners table for it). Payloads carry the
replica's origin id so it ignores its own. An event too large for a NOTIFY payload is sent as its (account,
seq) and read back from the store by the receiving replica. A fifth channel carries probes:
`listener_healthy()` sends one and waits to hear it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import psycopg

from aitbc.domain.events import JobEvent
from aitbc.streaming.hub import EventHub

log = logging.getLogger(__name__)
EVENTS, WORK, MINERS, PROBES = "aitbc_events", "aitbc_work", "aitbc_miners", "aitbc_probes"
PRINCIPALS, LIVE_MINERS = "aitbc_principals", "aitbc_live_miners"
MAX_PAYLOAD = 7900  # PostgreSQL's limit is 8000 bytes
RECONNECT_SECONDS = 1.0

FetchEvent = Callable[[str, int], Awaitable[JobEvent | None]]


def _event_payload(origin: str, event: JobEvent) -> str:
    document = {
        "origin": origin,
        "seq": event.seq,
        "account_id": event.account_id,
        "job_id": event.job_id,
        "kind": event.kind,
        "status": event.status,
        "progress": event.progress,
        "at": event.at.isoformat(),
        "data": event.data,
    }
    text = json.dumps(document, separators=(",", ":"), default=str)
    if len(text.encode()) <= MAX_PAYLOAD:
        return text
    return json.dumps({"origin": origin, "seq": event.seq, "account_id": event.account_id, "by_reference": True})


class PostgresRelay:
    def __init__(self, conninfo: str, hub: EventHub, fetch_event: FetchEvent) -> None:
        self._conninfo = conninfo
        self._hub = hub
        self._fetch_event = fetch_event
        self.origin = secrets.token_hex(8)
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=10000)
        self._tasks: list[asyncio.Task[None]] = []
        self._probes: dict[str, asyncio.Event] = {}
        self.listening = asyncio.Event()

    # -- sending (called by the hub; never blocks the caller) --------------------------------------

    def _send(self, channel: str, payload: str) -> None:
        try:
            self._outbox.put_nowait((channel, payload))
        except asyncio.QueueFull:
            log.warning("relay outbox full; other replicas miss a %s notice (their subscribers resume by seq)", channel)

    def send_event(self, event: JobEvent) -> None:
        self._send(EVENTS, _event_payload(self.origin, event))

    def send_work(self) -> None:
        self._send(WORK, json.dumps({"origin": self.origin}))

    def send_miner(self, miner_id: str) -> None:
        self._send(MINERS, json.dumps({"origin": self.origin, "miner_id": miner_id}))

    def send_principals(self) -> None:
        self._send(PRINCIPALS, json.dumps({"origin": self.origin}))

    def send_miner_seen(self, record: Mapping[str, Any]) -> None:
        self._send(LIVE_MINERS, json.dumps({"origin": self.origin, "miner": dict(record)}, default=str))

    async def listener_healthy(self, timeout: float = 5.0) -> bool:
        """Whether notices flow now: send a probe NOTIFY the way every notice goes (the outbox and its
        connection) and wait until this replica's listener hears it back. `listening` says only that LISTEN ran
        once; after it a connection can be lost, and a reconnect takes a while."""
        token = secrets.token_hex(8)
        heard = self._probes[token] = asyncio.Event()
        try:
            self._send(PROBES, json.dumps({"origin": self.origin, "probe": token}))
            await asyncio.wait_for(heard.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            del self._probes[token]
        return True

    # -- running ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._hub.relay = self
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._deliver_outbox())]
        await asyncio.wait_for(self.listening.wait(), timeout=30)

    async def stop(self) -> None:
        self._hub.relay = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver_outbox(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as connection:
                    while True:
                        channel, payload = await self._outbox.get()
                        await connection.execute("SELECT pg_notify(%s, %s)", (channel, payload))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay sender lost its connection; reconnecting")
                await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as connection:
                    for channel in (EVENTS, WORK, MINERS, PRINCIPALS, LIVE_MINERS, PROBES):
                        await connection.execute(f"LISTEN {channel}")
                    if self.listening.is_set():
                        self._hub.notices_missed()  # a reconnect: e.g. live miners are read again
                    self.listening.set()
                    # Anything missed while reconnecting: claimers re-check, subscribers resume by seq, cached
                    # principals are read again.
                    self._hub.forget_principals()
                    await self._hub.wake_claimers()
                    async for notice in connection.notifies():
                        await self._receive(notice.channel, notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay listener lost its connection; reconnecting")
                await asyncio.sleep(RECONNECT_SECONDS)

    async def _receive(self, channel: str, payload: str) -> None:
        try:
            message: dict[str, Any] = json.loads(payload)
        except ValueError:
            return
        if channel == PROBES:  # every replica hears every probe; only the one that sent it is waiting for it
            heard = self._probes.get(str(message.get("probe"))) if message.get("origin") == self.origin else None
            if heard is not None:
                heard.set()
            return
        if message.get("origin") == self.origin:
            return
        if channel == WORK:
            await self._hub.wake_claimers()
        elif channel == PRINCIPALS:
            self._hub.forget_principals()
        elif channel == LIVE_MINERS and isinstance(message.get("miner"), dict):
            self._hub.deliver_miner_seen(message["miner"])
        elif channel == MINERS and isinstance(message.get("miner_id"), str):
            self._hub.wake_miner(message["miner_id"])
        elif channel == EVENTS:
            event = await self._event_from(message)
            if event is not None:
                self._hub.deliver(event)

    async def _event_from(self, message: dict[str, Any]) -> JobEvent | None:
        if message.get("by_reference"):
            return await self._fetch_event(str(message["account_id"]), int(message["seq"]))
        return JobEvent(
            seq=int(message["seq"]),
            account_id=str(message["account_id"]),
            job_id=str(message["job_id"]),
            kind=str(message["kind"]),
            status=str(message["status"]),
            progress=int(message["progress"]),
            at=datetime.fromisoformat(message["at"]),
            data=dict(message.get("data") or {}),
        )
