"""What `Client` and `AsyncClient` share besides the calls: where to connect, how a failed connection reads,
and the job events' WebSocket address and messages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlencode

import httpx

from aitbc.domain.errors import RateLimited
from aitbc.protocol.jobs import EventMessage
from aitbc.sdk import http_log
from aitbc.sdk.config import resolve_connection
from aitbc.sdk.errors import ConnectionFailed, error_for_status
from aitbc.sdk.rate_limits import RateLimitRetries, RateLimitWaits, retry_safe
from aitbc.sdk.resuming import Notices

UPLOAD_CHUNK = 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=120.0)
QUICK_TIMEOUT = httpx.Timeout(10.0)  # a check that should answer at once (`aitbc blockchain status`)


def ws_url(base: str, job_id: str | None, since: int | None) -> str:
    query = {k: v for k, v in (("job_id", job_id), ("since", since)) if v is not None}
    scheme_url = "ws" + base[4:] if base.startswith("http") else base
    return f"{scheme_url}/v1/jobs/ws" + (f"?{urlencode(query)}" if query else "")


def event(message: str | bytes) -> EventMessage:
    """An event, or the error the WebSocket refused the connection with (`code`: 4000 + an HTTP status)."""
    data = json.loads(message)
    if "error" in data and "seq" not in data:
        status = int(data.get("code", 4400)) - 4000
        if status == 429:
            raise RateLimited(str(data["error"]), int(data.get("retry_after", 1)))
        raise error_for_status(status, str(data["error"]))
    return EventMessage.model_validate(data)


def upload_headers(size: int) -> dict[str, str]:
    return {"Content-Length": str(size), "Content-Type": "application/octet-stream"}


class ClientBase:
    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        profile: str | None = None,
        notices: Notices | None = None,
        rate_limits: RateLimitRetries | None = None,
    ) -> None:
        connection = resolve_connection(url, api_key, profile)
        self.url = connection.url
        self.api_key = connection.api_key
        self.headers = {"X-Api-Key": self.api_key} if self.api_key else {}
        self.notices = notices
        self.rate_limits = rate_limits or RateLimitRetries()

    def _waits(self, method: str, headers: Mapping[str, str]) -> RateLimitWaits:
        return RateLimitWaits(self.rate_limits, retry_safe(method, headers))

    def _notify(self, message: str) -> None:
        """Tell the caller why a call waits (a reconnect, a rate limit), if it asked to be told."""
        if self.notices is not None:
            self.notices(message)

    def _unreachable(self, error: Exception) -> ConnectionFailed:
        http_log.unreachable(self.url, error)
        return ConnectionFailed(
            f"cannot reach the coordinator at {self.url} ({error.__class__.__name__}): is `aitbc serve` running? "
            "Set --url or AITBC_URL to point elsewhere."
        )
