"""The one place that turns AITBC errors (and request validation failures) into HTTP answers."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from aitbc.domain.errors import AitbcError, RateLimited

log = logging.getLogger(__name__)
# nginx's code for "the client closed the connection before the answer": it shows in the access log only.
CLIENT_CLOSED_REQUEST = 499


def error_body(code: str, message: str, item: int | None = None) -> dict[str, str | int]:
    """`item`: in a refused batch, the index of the item that was refused."""
    body: dict[str, str | int] = {"error": code, "message": message, "detail": message}
    if item is not None:
        body["item"] = item
    return body


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:10]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def _batch_item(error: RequestValidationError) -> int | None:
    """The index of the first refused item of a batch body (`{"jobs": [...]}`), if that is what failed."""
    for item in error.errors():
        loc = tuple(item.get("loc", ()))
        if len(loc) >= 3 and loc[:2] == ("body", "jobs") and isinstance(loc[2], int):
            return loc[2]
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AitbcError)
    async def aitbc_error(_request: Request, error: AitbcError) -> JSONResponse:
        headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RateLimited) else None
        return JSONResponse(
            error_body(error.code, error.message, error.item), status_code=error.status_code, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("invalid_input", _validation_message(error), _batch_item(error)), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body("http_error", str(error.detail)),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(ClientDisconnect)
    async def client_left(_request: Request, _error: ClientDisconnect) -> Response:
        """The client hung up while sending its request: nothing was stored, nobody waits for an answer, and
        it is not the server's error (a dropped upload or a cancelled submit, not a traceback in the log)."""
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=error)
        return JSONResponse(error_body("internal", "internal error; see the coordinator log"), status_code=500)
