"""Principals by key hash, so an authenticated request costs no database query.

Bounded (the least recently used go first) and positive only: an unknown or revoked key is never remembered,
so random keys cannot fill memory; each costs the one indexed lookup it always cost. Three things empty it:
a change made through this replica (at once), a notice from another replica (PostgreSQL's LISTEN/NOTIFY),
and the database's principal version moving, which catches changes made straight on the database
(`aitbc admin … --data-dir`). The version is read lazily by the first request after `check_seconds`, once
for all the requests that arrive meanwhile, so a change is seen at most `check_seconds` after it commits.

A lookup that missed keeps what it read only if nothing emptied the cache while it read (the generation
did not move): a revocation that commits during the read cannot be overwritten by the row read before it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aitbc.domain.accounts import Principal

DEFAULT_MAX_PRINCIPALS = 10_000  # a principal is a few hundred bytes: a few MiB at most
DEFAULT_CHECK_SECONDS = 0.5


class PrincipalCache:
    def __init__(
        self,
        read_version: Callable[[], Awaitable[int]],
        max_size: int = DEFAULT_MAX_PRINCIPALS,
        check_seconds: float = DEFAULT_CHECK_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_version = read_version
        self.max_size = max_size
        self.check_seconds = check_seconds
        self._monotonic = monotonic
        self._entries: OrderedDict[str, Principal] = OrderedDict()
        self._generation = 0
        self._version: int | None = None
        self._checked_at = -math.inf
        self._checking: asyncio.Future[None] | None = None
        self.version_checks = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def generation(self) -> int:
        """Moves each time the cache is emptied; `put` takes the value read before its lookup."""
        return self._generation

    def get(self, key_hash: str) -> Principal | None:
        found = self._entries.get(key_hash)
        if found is not None:
            self._entries.move_to_end(key_hash)
        return found

    def put(self, key_hash: str, principal: Principal, generation: int) -> None:
        if generation != self._generation:
            return  # emptied while the row was read: the row may predate the change
        self._entries[key_hash] = principal
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self._generation += 1

    async def refresh(self) -> None:
        """Empty the cache if the principal version moved; reads it at most once per `check_seconds`."""
        elapsed = self._monotonic() - self._checked_at
        if 0 <= elapsed < self.check_seconds:
            return
        if self._checking is None:
            self._checking = asyncio.ensure_future(self._check())
        await asyncio.shield(self._checking)  # a caller that goes away does not cancel the others' check

    async def _check(self) -> None:
        try:
            started = self._monotonic()
            version = await self._read_version()
            self.version_checks += 1
            if version != self._version:
                self.clear()
                self._version = version
            self._checked_at = started
        finally:
            self._checking = None
