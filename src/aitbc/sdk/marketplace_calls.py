"""API calls for the marketplace: the GPUs and runtimes on offer now, and a job's quote on each GPU model on
offer."""

from __future__ import annotations

from typing import Any, Unpack

from aitbc.protocol.marketplace import GpuList, MarketQuote, RuntimeList
from aitbc.sdk.calls import Call, SubmitOptions, model, submit


def gpus(model_name: str | None = None, region: str | None = None, gpu_type: str | None = None) -> Call[GpuList]:
    params: dict[str, Any] = {
        name: value for name, value in (("model", model_name), ("region", region), ("gpu_type", gpu_type)) if value
    }
    return Call("GET", "/v1/marketplace/gpus", model(GpuList), params=params)


def runtimes() -> Call[RuntimeList]:
    return Call("GET", "/v1/marketplace/runtimes", model(RuntimeList))


def quote(**options: Unpack[SubmitOptions]) -> Call[MarketQuote]:
    """POST /v1/marketplace/quote with the body `submit` would send (an idempotency key means nothing here)."""
    body = submit(**options).json
    return Call("POST", "/v1/marketplace/quote", model(MarketQuote), json=body)
