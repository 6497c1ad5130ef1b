"""AITBC: a coordinator, miner agent, CLI and SDK for a marketplace of AI compute."""

from aitbc.sdk.client import AsyncClient, Client
from aitbc.version import VERSION as __version__

__all__ = ["AsyncClient", "Client", "__version__"]
