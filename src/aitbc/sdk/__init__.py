"""The Python SDK: `Client` and `AsyncClient` over httpx, typed with the wire models."""
