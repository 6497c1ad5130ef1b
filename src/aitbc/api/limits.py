"""A cap on request bodies, so a huge JSON body is refused with 413 before it is read into memory.
Streamed uploads (input files, result files) are exempt here: their own limits apply as they stream."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aitbc.api.errors import error_body

STREAMED_PATHS = re.compile(r"^/v1/(files$|miners/[^/]+/jobs/[^/]+/files/)")


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it through as a 413 rather than a 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes: upload large inputs with POST /v1/files")


class BodyLimit:
    """`larger`: paths whose bodies may be larger than `max_bytes` (a batch of jobs), with their own cap."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        has_body = False
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                declared = value
                has_body = has_body or value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body or STREAMED_PATHS.match(scope["path"]):  # most requests (reads) have no body at all
            await self.app(scope, receive, send)
            return
        max_bytes = self.larger.get(scope["path"], self.max_bytes)
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await self._refuse(send, max_bytes)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, max_bytes)

    async def _refuse(self, send: Send, max_bytes: int) -> None:
        body: Any = error_body(
            "payload_too_large",
            f"request body over {max_bytes} bytes: upload large inputs with POST /v1/files",
        )
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
