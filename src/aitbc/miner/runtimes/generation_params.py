"""The sampling parameters of a text-generation job, checked once for every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aitbc.miner.runtimes.interface import JobFailed

MAX_TOKENS_LIMIT = 8192
DEFAULT_MAX_TOKENS = 128


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
            temperature=_number(params, "temperature", 1.0, 0, 10),
            top_p=_number(params, "top_p", 1.0, 0.0001, 1),
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
