"""Following job events across dropped connections (`resumable_events`), decided once for `Client` and
`AsyncClient`: where a stream stands (the last `seq` delivered, which the WebSocket resumes after), how long to
pause before each reconnect, and, when the caller set a bound, when to give up with `ConnectionLost`."""

from __future__ import annotations

import time
from collections.abc import Callable

from aitbc.domain.errors import RateLimited
from aitbc.protocol.jobs import EventMessage
from aitbc.sdk.errors import ConnectionFailed, ConnectionLost

# Seconds before each reconnect, the last repeated.
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 5.0)
# How long `aitbc client watch` and `logs --follow` keep trying, by default.
DEFAULT_RECONNECT_SECONDS = 60.0
# A connection that stayed up this long (longer than a connect attempt can take: 10 s) or delivered an event was
# a good one: a later drop starts a new outage, with the whole time to reconnect again.
STABLE_SECONDS = 15.0
# Told of each wait, in words ("connection lost; reconnecting…"); the CLI prints them on stderr.
Notices = Callable[[str], None]


class Resumption:
    """One followed stream: `starting` before each connection, `delivered` for each event, `dropped` when the
    stream ends, which answers the pause before the next connection, or raises `ConnectionLost`."""

    def __init__(
        self,
        url: str,
        since: int | None,
        reconnect_seconds: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`reconnect_seconds`: how long one outage may last before it is given up; None: never give up."""
        self.url = url
        self.since = since
        self.reconnect_seconds = reconnect_seconds
        self._clock = clock
        self._started_at = clock()
        self._delivered = False
        self._lost_at: float | None = None
        self._attempt = 0

    def starting(self) -> None:
        self._started_at = self._clock()
        self._delivered = False

    def delivered(self, event: EventMessage) -> None:
        self.since = event.seq
        self._delivered = True

    def dropped(self, error: ConnectionFailed | RateLimited | None) -> float:
        """The pause before reconnecting, after `since` (a rate limit's `retry_after` at least)."""
        now = self._clock()
        if self._delivered or now - self._started_at >= STABLE_SECONDS:
            self._lost_at, self._attempt = None, 0
        if self._lost_at is None:
            self._lost_at = now
        pause = RECONNECT_DELAYS[min(self._attempt, len(RECONNECT_DELAYS) - 1)]
        if isinstance(error, RateLimited):
            pause = max(pause, float(error.retry_after))
        self._attempt += 1
        if self.reconnect_seconds is None:
            return pause
        remaining = self._lost_at + self.reconnect_seconds - now
        if remaining <= 0 or (isinstance(error, RateLimited) and pause > remaining):
            raise ConnectionLost(
                f"lost the connection to the coordinator at {self.url} and could not reconnect within "
                f"{self.reconnect_seconds:g} s; the job goes on there: follow it again to resume"
            )
        return min(pause, remaining)

    def notice(self) -> str | None:
        """What to tell the caller as an outage begins (nothing on its later attempts)."""
        if self._attempt != 1:
            return None
        after = f" after event {self.since}" if self.since else ""
        bound = f" for up to {self.reconnect_seconds:g} s" if self.reconnect_seconds is not None else ""
        return f"connection to the coordinator lost; reconnecting{bound} (resuming{after})"


def as_connection_failed(error: ConnectionFailed | RateLimited | None) -> ConnectionFailed | None:
    """What `on_drop` hears: a refused connection (a rate limit) as a failed one."""
    if isinstance(error, RateLimited):
        return ConnectionFailed(f"the coordinator refused the connection: {error.message}")
    return error
