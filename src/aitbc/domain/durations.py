"""Durations as people type them: `45s`, `90m`, `12h`, `7d`."""

from __future__ import annotations

import re

from aitbc.domain.errors import InvalidInput

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d{1,7})\s*([smhd])?\s*$")


def parse_duration(text: str, bare: str | None = None) -> int:
    """Seconds in `text`, which is a whole number and a unit: s, m (minutes), h (hours) or d (days); a bare
    number counts in the unit `bare` where one is given (else it needs a unit)."""
    matched = _PATTERN.match(text.lower())
    unit = matched.group(2) or bare if matched is not None else None
    if matched is None or unit is None or int(matched.group(1)) == 0:
        raise InvalidInput(
            f"invalid duration {text!r}: use a positive whole number and s, m, h or d, like 90s, 30m, 12h, 7d"
        )
    return int(matched.group(1)) * _UNITS[unit]


def describe_duration(seconds: int) -> str:
    """The largest whole unit that fits: 604800 → `7d`, 5400 → `90m`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
