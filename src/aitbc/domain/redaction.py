"""What a secret looks like, and how it is shown where people read: the server's log redacts API keys and
share tokens wherever they appear; the CLI shows a key as `aitbc_…abcd`, enough to tell two keys apart and
never enough to use one."""

from __future__ import annotations

import re

REDACTED = "<redacted>"
# API keys are `aitbc_` and share tokens `aitbcs_`, each followed by 43 URL-safe characters.
SECRET_PATTERNS = (
    (re.compile(r"(/v1/shared/)[^/?#\s\"']+"), r"\1<token>"),
    (re.compile(r"(\bapi_key=)[^&#\s\"']*", re.IGNORECASE), r"\1" + REDACTED),
    (re.compile(r"\baitbcs?_[A-Za-z0-9_-]{40,}"), REDACTED),
)
KEY_PREFIX = "aitbc_"
SHOWN_CHARACTERS = 4
SHORTEST_MASKED = 16  # a key shorter than this shows none of its characters


def redact(text: str) -> str:
    """`text` with every API key, share token and `api_key=` query value replaced."""
    for pattern, replacement in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_key(key: str) -> str:
    """`aitbc_…abcd`: the key's prefix and its last four characters; a short key (not one we issue) shows
    nothing of itself."""
    if len(key) < SHORTEST_MASKED:
        return "…" * 3
    prefix = KEY_PREFIX if key.startswith(KEY_PREFIX) else ""
    return f"{prefix}…{key[-SHOWN_CHARACTERS:]}"
