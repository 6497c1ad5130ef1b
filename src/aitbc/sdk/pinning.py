"""Trust on first use for the coordinator's signing key: the first key a coordinator shows is pinned in the
profile, and receipts are checked against the pinned key from then on. A key that changes is reported, and
checked against the old one unless the caller trusts the new key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aitbc.domain.clock import isoformat_z
from aitbc.domain.receipts import Check
from aitbc.protocol.results import CoordinatorKeyView
from aitbc.sdk.config import read_profile, write_profile

PINNED_KEYS = "coordinator_keys"


@dataclass(frozen=True)
class KeyChange:
    """The coordinator at `url` shows another key than the one pinned for it."""

    url: str
    served_key_id: str
    pinned_key_id: str | None
    pinned_at: str | None
    trusted: bool


@dataclass(frozen=True)
class PinnedKey:
    public_key: str
    check: Check
    change: KeyChange | None = None


def _pins() -> dict[str, Any]:
    return dict(read_profile().get(PINNED_KEYS) or {})


def pin_key(url: str, served: CoordinatorKeyView, trust_new_key: bool = False) -> PinnedKey:
    """The key to check the receipts of the coordinator at `url` with, pinning it on first use."""
    pins = _pins()
    pinned = pins.get(url)
    record = {"public_key": served.public_key, "key_id": served.key_id, "pinned_at": isoformat_z(datetime.now(UTC))}
    if pinned is None:
        write_profile({PINNED_KEYS: {**pins, url: record}})
        return PinnedKey(
            served.public_key, Check("coordinator key", True, f"{served.key_id} pinned for {url} (first use)")
        )
    if pinned["public_key"] == served.public_key:
        return PinnedKey(served.public_key, Check("coordinator key", True, f"{served.key_id} matches the key pinned"))
    change = KeyChange(url, served.key_id, pinned.get("key_id"), pinned.get("pinned_at"), trust_new_key)
    if trust_new_key:
        write_profile({PINNED_KEYS: {**pins, url: record}})
        check = Check("coordinator key", True, f"{served.key_id} trusted anew (it changed)")
        return PinnedKey(served.public_key, check, change)
    check = Check("coordinator key", False, f"changed from {pinned.get('key_id')}")
    return PinnedKey(str(pinned["public_key"]), check, change)


def pinned_key(url: str | None) -> str | None:
    """The key pinned for `url` (offline, no coordinator asked); the only one pinned if `url` is not given or not
    pinned; None if that does not name one key."""
    pins = _pins()
    if url and url.rstrip("/") in pins:
        return str(pins[url.rstrip("/")]["public_key"])
    if len(pins) == 1:
        return str(next(iter(pins.values()))["public_key"])
    return None
