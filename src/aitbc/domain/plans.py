"""Account plans: how long results and input files are kept, how fast an account may call, how many jobs it may
run, and how many bytes of input files it may keep stored."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Plan(enum.StrEnum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class Role(enum.StrEnum):
    CLIENT = "client"
    MINER = "miner"
    ADMIN = "admin"


@dataclass(frozen=True)
class PlanLimits:
    retention_days: int
    requests_per_minute: int
    requests_per_hour: int
    max_concurrent_jobs: int
    # The sum of the account's stored input files (POST /v1/files); they are kept `retention_days` too.
    input_storage_bytes: int = 1024**3


DEFAULT_PLAN_LIMITS: dict[Plan, PlanLimits] = {
    Plan.FREE: PlanLimits(
        retention_days=7,
        requests_per_minute=60,
        requests_per_hour=1000,
        max_concurrent_jobs=50,
        input_storage_bytes=1024**3,
    ),
    Plan.PRO: PlanLimits(
        retention_days=30,
        requests_per_minute=600,
        requests_per_hour=20000,
        max_concurrent_jobs=500,
        input_storage_bytes=10 * 1024**3,
    ),
    Plan.ENTERPRISE: PlanLimits(
        retention_days=90,
        requests_per_minute=6000,
        requests_per_hour=200000,
        max_concurrent_jobs=5000,
        input_storage_bytes=100 * 1024**3,
    ),
}
