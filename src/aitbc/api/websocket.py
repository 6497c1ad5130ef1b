"""`WS /v1/jobs/ws`: the caller's job events, live, resumable with `since=<seq>`."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from aitbc.api.checked_route import check_text
from aitbc.concurrency import unless
from aitbc.domain.errors import AitbcError, RateLimited
from aitbc.services.views import event_message
from aitbc.wiring import Coordinator

router = APIRouter()

POLICY_VIOLATION = 1008
MAX_SEQUENCE = 2**63 - 1  # event sequence numbers are 64-bit in storage


@router.websocket("/v1/jobs/ws")
async def job_events(websocket: WebSocket) -> None:
    coordinator: Coordinator = websocket.app.state.coordinator
    params = websocket.query_params
    key = websocket.headers.get("x-api-key") or params.get("api_key")
    job_id = params.get("job_id") or None
    try:
        for name, value in params.multi_items():
            check_text(value, f"query parameter {name!r}")  # what the HTTP routes get from CheckedRoute
        principal = await coordinator.accounts.authenticate(key)
        coordinator.rate_limiter.check(principal)
        since = int(params["since"]) if params.get("since") else None
        if since is not None and not 0 <= since <= MAX_SEQUENCE:
            raise ValueError
        if job_id is not None:
            await coordinator.jobs.get(principal, job_id)
    except (AitbcError, ValueError) as error:
        reason = error.message if isinstance(error, AitbcError) else "'since' must be a sequence number"
        code = 4000 + getattr(error, "status_code", 400)
        await websocket.accept()
        refusal: dict[str, object] = {"error": reason, "code": code}
        if isinstance(error, RateLimited):
            refusal["retry_after"] = error.retry_after
        await websocket.send_json(refusal)
        await websocket.close(code=code if code != 4400 else POLICY_VIOLATION, reason=reason[:120])
        return
    await websocket.accept()
    sending = _send_events(websocket, coordinator, principal.account.id, since, job_id)
    await unless(sending, _until_disconnect(websocket))  # a client that hangs up is noticed at once


async def _send_events(
    websocket: WebSocket, coordinator: Coordinator, account_id: str, since: int | None, job_id: str | None
) -> None:
    stream = coordinator.events.stream(account_id, since, job_id)
    try:
        async for event in stream:
            await websocket.send_text(event_message(event).model_dump_json())
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]


async def _until_disconnect(websocket: WebSocket) -> None:
    """The client sends nothing we need, but reading is how a closed connection is noticed at once, so its
    subscription is dropped without waiting for the next event."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
