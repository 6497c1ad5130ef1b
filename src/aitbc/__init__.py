"""AITBC: a coordinator, miner agent, CLI and SDK for a marketplace of AI compute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aitbc.version import VERSION as __version__

if TYPE_CHECKING:
    from aitbc.sdk.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    """`aitbc.Client` and `aitbc.AsyncClient` load the SDK (httpx, websockets, pydantic) when first asked for,
    so that importing any other part of aitbc (the domain, the miner) does not."""
    if name in ("AsyncClient", "Client"):
        from aitbc.sdk import client

        return getattr(client, name)
    raise AttributeError(f"module 'aitbc' has no attribute {name!r}")
