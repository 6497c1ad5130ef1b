"""The sampling parameters of a text-generation job, checked once for every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aitbc.miner.runtimes.interface import JobFailed

MAX_TOKENS_LIMIT = 8192
DEFAULT_MAX_TOKENS = 128
TEMPERATURE_RANGE = (0, 10)
TOP_P_RANGE = (0.0001, 1)


def _range(low: float, high: float, what: str) -> dict[str, Any]:
    return {"type": "number", "minimum": low, "maximum": high, "description": what}


# What `GenerationParams.from_params` reads, and nothing else: a key it does not know is a typo.
PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "max_tokens": _range(1, MAX_TOKENS_LIMIT, f"most tokens to generate (default {DEFAULT_MAX_TOKENS})"),
        "temperature": _range(*TEMPERATURE_RANGE, "sampling temperature; 0: greedy (default 1)"),
        "top_p": _range(*TOP_P_RANGE, "nucleus sampling's probability mass (default 1)"),
        "seed": {"type": ["integer", "null"], "description": "the sampler's seed, for a repeatable answer"},
    },
    "additionalProperties": False,
}


def _number(params: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise JobFailed(f"params.{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> GenerationParams:
        seed = params.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise JobFailed("params.seed must be an integer")
        return cls(
            max_tokens=int(_number(params, "max_tokens", DEFAULT_MAX_TOKENS, 1, MAX_TOKENS_LIMIT)),
            temperature=_number(params, "temperature", 1.0, *TEMPERATURE_RANGE),
            top_p=_number(params, "top_p", 1.0, *TOP_P_RANGE),
            seed=seed,
        )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of text), "length" (max_tokens) or "canceled"

    def counts(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
