"""Per-account request limits by plan (a minute window and an hour window), checked before any work.

Counters live in this process: each coordinator replica enforces the limits on the requests it serves.
Miners and admins are not limited here; miners are paced by long polls and leases instead.
"""

from __future__ import annotations

import math
from collections import defaultdict

from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import RateLimited
from aitbc.domain.plans import Plan, PlanLimits, Role


class RateLimiter:
    def __init__(self, limits: dict[Plan, PlanLimits], clock: Clock) -> None:
        self._limits = limits
        self._clock = clock
        self._counts: dict[tuple[str, int, int], int] = defaultdict(int)

    def check(self, principal: Principal) -> None:
        """Count one request, or refuse it (counting nothing) with the seconds until the window resets."""
        if principal.role is not Role.CLIENT:
            return
        limits = self._limits[principal.account.plan]
        now = self._clock.now().timestamp()
        windows = ((60, limits.requests_per_minute), (3600, limits.requests_per_hour))
        keys = []
        for length, allowed in windows:
            start = int(now // length)
            key = (principal.account.id, length, start)
            if self._counts[key] >= allowed:
                retry_after = max(1, math.ceil((start + 1) * length - now))
                unit = "minute" if length == 60 else "hour"
                raise RateLimited(
                    f"rate limit: your {principal.account.plan.value} plan allows {allowed} requests per {unit}; "
                    f"retry in {retry_after} s",
                    retry_after=retry_after,
                )
            keys.append(key)
        for key in keys:
            self._counts[key] += 1
        if len(self._counts) > 100_000:
            self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        for key in [k for k in self._counts if (k[2] + 1) * k[1] < now]:
            del self._counts[key]
