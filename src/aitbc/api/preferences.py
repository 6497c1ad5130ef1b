"""The `Prefer` request header (RFC 7240), as far as AITBC honours it: `wait`.

`Prefer: wait=N` asks the server to hold the answer up to N seconds for the work to finish (as Replicate's
sync mode does, and RFC 7240 §4.3 defines it); a bare `Prefer: wait` asks for the longest wait we give. N is
capped at `MAX_WAIT_SECONDS`, and the answer says what was applied (`Preference-Applied: wait=N`). Every other
preference, a malformed `wait` and a `wait=0` are ignored, as RFC 7240 says a server ignores what it does not
understand: the request is answered at once, as if no `Prefer` was sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request

MAX_WAIT_SECONDS = 60

PREFER_WAIT = "wait"
PREFER_HEADER: dict[str, Any] = {
    "parameters": [
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 1000},
            "description": (
                f"`wait=N`: hold the answer up to N seconds (at most {MAX_WAIT_SECONDS}) until the job ends, then "
                "answer it with its `result`; if it has not ended by then, as it stands (poll again). The answer "
                "says `Preference-Applied: wait=N`. Other preferences are ignored (RFC 7240)."
            ),
        }
    ]
}


def _preferences(values: Iterable[str]) -> Iterable[tuple[str, str | None]]:
    """Each preference's (lower-cased token, value or None), in order, from the header's values: split at
    commas outside quoted strings, parameters after `;` dropped."""
    for value in values:
        part, quoted, parts = "", False, []
        for character in value:
            if character == '"':
                quoted = not quoted
            if character == "," and not quoted:
                parts.append(part)
                part = ""
            else:
                part += character
        parts.append(part)
        for preference in parts:
            head = preference.split(";", 1)[0]
            token, equals, word = head.partition("=")
            token = token.strip().lower()
            if token:
                yield token, word.strip().strip('"').strip() if equals else None


def wait_seconds(values: Iterable[str]) -> int | None:
    """The seconds a request's `Prefer` asks to wait (capped), or None for no wait. Only the first `wait`
    counts (RFC 7240 §2)."""
    for token, word in _preferences(values):
        if token != PREFER_WAIT:
            continue
        if word is None:
            return MAX_WAIT_SECONDS
        if not word.isascii() or not word.isdigit():
            return None
        seconds = MAX_WAIT_SECONDS if len(word) > 4 else min(int(word), MAX_WAIT_SECONDS)
        return seconds or None
    return None


def preferred_wait(request: Request) -> int | None:
    """`wait_seconds` of the request's Prefer headers (a request without one costs a lookup)."""
    values = request.headers.getlist("prefer")
    return wait_seconds(values) if values else None
