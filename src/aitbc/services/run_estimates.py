"""Typical run times by job type and model, for the estimate each submit shows (`estimated_time_seconds`).

The figure is the mean billed time of the last completed jobs of that kind: it moves slowly, so it is read from
the store at most once per `max_age_seconds` per kind rather than once per submit (a query, and on SQLite a
transaction, that a submit would otherwise pay every time). Kinds are bounded: the least recently asked go first.
One read per kind is in flight at a time: submits that arrive meanwhile wait for it, or take the figure it
replaces, rather than each running the same query (a burst of submits at start-up did).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from aitbc.storage.interfaces import JobReadModel

ESTIMATE_SAMPLE = 100
DEFAULT_MAX_AGE_SECONDS = 5.0
DEFAULT_MAX_KINDS = 1024

Kind = tuple[str, str | None]  # (type, model)


class RunEstimates:
    def __init__(
        self,
        jobs: JobReadModel,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        max_kinds: int = DEFAULT_MAX_KINDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._jobs = jobs
        self.max_age_seconds = max_age_seconds
        self.max_kinds = max_kinds
        self._monotonic = monotonic
        self._known: OrderedDict[Kind, tuple[float | None, float]] = OrderedDict()
        self._reading: dict[Kind, asyncio.Task[float | None]] = {}

    async def typical_seconds(self, job_type: str, model: str | None) -> float | None:
        """The mean billed seconds of the last completed jobs of this type and model (None: none yet)."""
        kind = (job_type, model)
        now = self._monotonic()
        known = self._known.get(kind)
        if known is not None and 0 <= now - known[1] < self.max_age_seconds:
            self._known.move_to_end(kind)
            return known[0]
        reading = self._reading.get(kind)
        if reading is not None:
            return known[0] if known is not None else await asyncio.shield(reading)
        reading = asyncio.ensure_future(self._jobs.average_billed_seconds(job_type, model, ESTIMATE_SAMPLE))
        self._reading[kind] = reading
        try:
            typical = await asyncio.shield(reading)
        finally:
            del self._reading[kind]  # whoever started the read ends it, even when cancelled (the read goes on)
        self._known[kind] = (typical, now)
        self._known.move_to_end(kind)
        while len(self._known) > self.max_kinds:
            self._known.popitem(last=False)
        return typical
