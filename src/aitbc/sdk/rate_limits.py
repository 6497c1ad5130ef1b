"""Waiting out a `429 Too Many Requests`, decided once for `Client` and `AsyncClient`: a request that is safe
to send again (a read, a PUT or DELETE, a submit that carries an Idempotency-Key) is retried after the
`Retry-After` the coordinator names, a bounded number of times and seconds in all; anything else, or a wait past
the bound, raises the `RateLimited` error at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RateLimitRetries:
    """How long a call may wait for its plan's rate limit: at most `attempts` retries and `total_seconds` of
    waiting in all (`RateLimitRetries(attempts=0)`: never wait)."""

    attempts: int = 5
    total_seconds: float = 60.0


def retry_safe(method: str, headers: Mapping[str, str]) -> bool:
    """Whether sending the request twice does what sending it once does."""
    return method.upper() in SAFE_METHODS or any(name.lower() == "idempotency-key" for name in headers)


def retry_after(response: httpx.Response) -> float:
    """The seconds the coordinator asks to wait (it sends whole seconds; a date or nothing reads as 1 s)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


class RateLimitWaits:
    """The waits of one call: `delay(response)` is how long to wait before sending it again, or None (answer
    the response as it is)."""

    def __init__(self, retries: RateLimitRetries, safe: bool) -> None:
        self._retries = retries
        self._safe = safe
        self._attempt = 0
        self._waited = 0.0

    def delay(self, response: httpx.Response) -> float | None:
        if response.status_code != 429 or not self._safe or self._attempt >= self._retries.attempts:
            return None
        seconds = retry_after(response)
        if self._waited + seconds > self._retries.total_seconds:
            return None
        self._attempt += 1
        self._waited += seconds
        return seconds


def rate_limit_notice(seconds: float) -> str:
    return f"rate limited; retrying in {seconds:g} s"
