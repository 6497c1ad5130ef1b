"""Coordinator settings: built once from flags and environment, then passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from aitbc.domain.plans import DEFAULT_PLAN_LIMITS, Plan, PlanLimits


def default_data_dir() -> Path:
    return Path(os.environ.get("AITBC_DATA_DIR", Path.home() / ".local" / "share" / "aitbc"))


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    lease_seconds: int = 60
    cancel_grace_seconds: int = 10
    queue_ttl_seconds: int = 24 * 3600
    max_attempts: int = 3
    max_inline_input_bytes: int = 1024 * 1024
    max_input_file_bytes: int = 1024**3
    max_result_file_bytes: int = 10 * 1024**3
    max_log_batch_lines: int = 1000
    miner_active_seconds: int = 120
    max_claim_wait_seconds: int = 60
    reaper_interval_seconds: float = 1.0
    run_reaper: bool = True
    plan_limits: dict[Plan, PlanLimits] = field(default_factory=lambda: dict(DEFAULT_PLAN_LIMITS))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'aitbc.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
