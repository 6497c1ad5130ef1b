"""The SDK's record of its exchanges with a coordinator, for `aitbc --debug` (or any program that turns the
`aitbc.sdk.http` logger to DEBUG): each request and its answer — method, URL, status, time to the answer's
headers, a request id, the headers — and each WebSocket opened, closed or lost. Nothing is formatted while
the level is off. Never a key: the API key header shows as `aitbc_…abcd`, secrets in URLs are redacted.

The coordinator assigns no request ids: while logging, each request carries an `X-Request-Id` of the SDK's
own (shown on both lines, so a request and its answer pair up); an id a proxy or server answers with wins.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import httpx

from aitbc.domain.redaction import mask_key, redact

log = logging.getLogger("aitbc.sdk.http")
REQUEST_ID = "X-Request-Id"
STARTED = "aitbc_started"
SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie", "set-cookie"})


def shown_headers(headers: Mapping[str, str]) -> str:
    """Headers as one line, every secret masked."""
    return ", ".join(
        f"{name}: {mask_key(value) if name.lower() in SECRET_HEADERS else redact(value)}"
        for name, value in headers.items()
    )


def on_request(request: httpx.Request) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    request.headers.setdefault(REQUEST_ID, secrets.token_hex(8))
    request.extensions[STARTED] = time.perf_counter()
    log.debug(
        "request %s %s [%s] %s",
        request.method,
        redact(str(request.url)),
        request.headers[REQUEST_ID],
        shown_headers(request.headers),
    )


def on_response(response: httpx.Response) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    request = response.request
    started = request.extensions.get(STARTED)
    elapsed = f"{(time.perf_counter() - started) * 1000:.1f} ms" if isinstance(started, float) else "?"
    log.debug(
        "answer  %s %s %s %s in %s [%s] %s",
        response.status_code,
        response.reason_phrase,
        request.method,
        redact(str(request.url)),
        elapsed,
        response.headers.get(REQUEST_ID) or request.headers.get(REQUEST_ID, "-"),
        shown_headers(response.headers),
    )


async def on_request_async(request: httpx.Request) -> None:
    on_request(request)


async def on_response_async(response: httpx.Response) -> None:
    on_response(response)


def event_hooks() -> dict[str, list[Callable[..., Any]]]:
    return {"request": [on_request], "response": [on_response]}


def async_event_hooks() -> dict[str, list[Callable[..., Coroutine[Any, Any, None]]]]:
    return {"request": [on_request_async], "response": [on_response_async]}


def websocket_opening(url: str, headers: Mapping[str, str]) -> None:
    log.debug("websocket open %s %s", redact(url), shown_headers(headers))


def websocket_ended(url: str, how: str) -> None:
    log.debug("websocket %s %s", how, redact(url))


def unreachable(url: str, error: Exception) -> None:
    log.debug("failed  %s: %s: %s", redact(url), error.__class__.__name__, redact(str(error)))
