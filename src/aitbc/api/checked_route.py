"""The one gate every request's text passes before a handler sees it.

Whatever a caller types ends up stored (job input, model, names, log lines, manifest paths) and sent back to
someone else later (a miner's claim, a client's list, a CSV export). Text that cannot be stored everywhere or
sent everywhere is refused here, once, for every route: text that is not valid Unicode (a lone surrogate:
SQLite keeps it, then no JSON encoder can send it), NUL characters (PostgreSQL refuses them), numbers that
are not JSON (NaN, Infinity) and JSON nested deeper than any real job needs (a recursion bomb for every
encoder down the line). JSON bodies are decoded here instead of by FastAPI, so they are parsed only once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from aitbc.api.direct_handler import direct_handler, is_json
from aitbc.domain.errors import InvalidInput

MAX_JSON_DEPTH = 32


def check_text(text: str, where: str) -> None:
    """Refuse NUL and anything UTF-8 cannot encode (lone surrogates)."""
    if "\x00" in text:
        raise InvalidInput(f"{where}: NUL characters are not allowed in text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInput(f"{where}: text is not valid Unicode ({error.reason} at character {error.start})") from None


def _refuse_constant(name: str) -> float:
    raise InvalidInput(f"request body: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(f"request body: the number {text[:40]} is too large")
    return value


def check_document(document: Any) -> None:
    """Every string (keys too) checked, nesting bounded; iterative, so depth cannot exhaust our own stack."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            check_text(value, "request body")
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise InvalidInput(f"request body: JSON nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(value, dict):
                for key, child in value.items():
                    check_text(key, "request body")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in value)


def decode_json(body: bytes) -> Any:
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError as error:
        raise InvalidInput(f"request body: not UTF-8 (byte {error.start})") from None
    except RecursionError:
        raise InvalidInput(f"request body: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"request body: malformed JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    except ValueError as error:  # an integer with more digits than Python converts
        raise InvalidInput(f"request body: {error}") from None
    check_document(document)
    return document


class CheckedRequest(Request):
    """A request whose JSON body is decoded (and checked) by `decode_json`."""

    _checked: Any

    async def json(self) -> Any:
        if not hasattr(self, "_checked"):
            self._checked = decode_json(await self.body())
        return self._checked


class CheckedRoute(APIRoute):
    """Every router of the API uses this route class: query and path text is checked, and a route that takes
    a JSON body gets it decoded by `decode_json` (errors raised here are AITBC errors, mapped like any other)."""

    direct = True  # served by `direct_handler` where it can (False: FastAPI's own handler, as a reference)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        direct = direct_handler(self) if self.direct else None
        handler = direct or super().get_route_handler()
        decodes_json = direct is None and self.body_field is not None  # the direct handler decodes it itself

        async def checked(request: Request) -> Response:
            scope = request.scope
            if scope.get("query_string"):
                for name, value in request.query_params.multi_items():
                    check_text(name, "query")
                    check_text(value, f"query parameter {name!r}")
            for name, value in request.path_params.items():
                if isinstance(value, str):
                    check_text(value, f"path parameter {name!r}")
            for raw_name, raw_value in scope["headers"]:  # an Idempotency-Key is stored; servers differ on NUL
                if b"\x00" in raw_value:
                    raise InvalidInput(f"header {raw_name.decode('latin-1')!r}: NUL characters are not allowed in text")
            request = CheckedRequest(scope, request.receive)
            if decodes_json and is_json(request) and await request.body():
                await request.json()
            return await handler(request)

        return checked
