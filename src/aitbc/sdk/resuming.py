"""Following job events across dropped connections, decided once for `Client` and `AsyncClient`: where a
stream stands (the last `seq` delivered, which the WebSocket resumes after) and how long it may keep trying to
reconnect after a network blip or a coordinator restart before it gives up with `ConnectionLost`."""

from __future__ import annotations

import time
from collections.abc import Callable

from aitbc.domain.errors import RateLimited
from aitbc.protocol.jobs import EventMessage
from aitbc.sdk.errors import ConnectionFailed, ConnectionLost

# How long a followed stream keeps trying to reconnect, by default; `None` given instead: never reconnect.
DEFAULT_RECONNECT_SECONDS = 60.0
FIRST_DELAY = 0.25
LONGEST_DELAY = 2.0
# A connection that stayed up this long (or delivered an event) was a good one: a later drop gets the whole
# reconnect time again.
STABLE_SECONDS = 5.0
# Told of each wait, in words ("connection lost; reconnecting in 1 s"); the CLI prints them on stderr.
Notices = Callable[[str], None]


class Resumption:
    """One followed stream: `connected` when a socket opens, `delivered` for each event, `dropped` when the
    socket ends, which answers how long to wait before reconnecting, or raises."""

    def __init__(
        self,
        url: str,
        since: int | None,
        reconnect_seconds: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.since = since
        self.reconnect_seconds = reconnect_seconds
        self._clock = clock
        self._opened_at: float | None = None
        self._delivered_since_open = False
        self._ever_connected = False
        self._lost_at: float | None = None
        self._attempt = 0

    def connected(self) -> None:
        self._opened_at = self._clock()
        self._delivered_since_open = False
        self._ever_connected = True

    def delivered(self, event: EventMessage) -> None:
        self.since = event.seq
        self._delivered_since_open = True

    def dropped(self, error: ConnectionFailed | RateLimited | None) -> float | None:
        """Seconds to wait before reconnecting (after `since`); None: the coordinator closed the stream and
        reconnecting is off, so it ends. Raises the error when there is nothing to resume (the first connection
        failed, or reconnecting is off), `ConnectionLost` once the time to reconnect is up."""
        now = self._clock()
        opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None and (self._delivered_since_open or now - opened_at >= STABLE_SECONDS):
            self._lost_at, self._attempt = None, 0
        if self._lost_at is None:
            self._lost_at = now
        if self.reconnect_seconds is None or not self._ever_connected:
            if error is None:
                return None
            raise error
        remaining = self._lost_at + self.reconnect_seconds - now
        delay = min(FIRST_DELAY * 2.0**self._attempt, LONGEST_DELAY, remaining)
        if isinstance(error, RateLimited):
            delay = max(delay, float(error.retry_after))
        if remaining <= 0 or delay > remaining:
            raise ConnectionLost(
                f"lost the connection to the coordinator at {self.url} and could not reconnect within "
                f"{self.reconnect_seconds:g} s; the job goes on there: follow it again to resume"
            )
        self._attempt += 1
        return delay

    def notice(self) -> str | None:
        """What to tell the caller as an outage begins (nothing on its later attempts)."""
        if self._attempt != 1:
            return None
        after = f" after event {self.since}" if self.since else ""
        return (
            f"connection to the coordinator lost; reconnecting for up to {self.reconnect_seconds:g} s (resuming{after})"
        )
