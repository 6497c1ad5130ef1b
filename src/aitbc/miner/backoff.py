"""Exponential backoff with jitter, so many miners do not hammer a coordinator that is coming back up."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    first: float = 0.2
    factor: float = 2.0
    cap: float = 3.0
    attempts: int = 0

    def next_delay(self) -> float:
        """The wait before the next try: grows from `first` to `cap`, with ±25 % jitter."""
        base = min(self.cap, self.first * self.factor**self.attempts)
        self.attempts += 1
        return base * random.uniform(0.75, 1.25)

    def reset(self) -> None:
        self.attempts = 0
