"""Coordinator settings: built once from flags and environment, then passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from aitbc.domain.plans import DEFAULT_PLAN_LIMITS, Plan, PlanLimits
from aitbc.domain.pricing import PriceTable


def default_data_dir() -> Path:
    return Path(os.environ.get("AITBC_DATA_DIR", Path.home() / ".local" / "share" / "aitbc"))


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    # SQLite's `synchronous`: "full" (each commit fsynced: an acknowledged write survives a power loss) or
    # "normal" (fsync at checkpoints only: faster, the last commits can be lost on power loss).
    sqlite_synchronous: str = field(default_factory=lambda: os.environ.get("AITBC_SQLITE_SYNCHRONOUS", "full"))
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    lease_seconds: int = 60
    # A miner not heard from this long (no heartbeat, no claim) is lost: the reaper hands its jobs back to the
    # queue then, not at the end of their leases. Miners are told to heartbeat three times as often.
    miner_lost_after_seconds: int = 15
    cancel_grace_seconds: int = 10
    queue_ttl_seconds: int = 24 * 3600
    max_attempts: int = 3
    max_inline_input_bytes: int = 1024 * 1024
    max_input_file_bytes: int = 1024**3
    max_result_file_bytes: int = 10 * 1024**3
    # Disk: all the files uploaded for one job (every attempt, listed in a manifest or not) stay under this;
    # blobs nothing refers to are purged once they have been left alone for the grace period.
    max_job_upload_bytes: int = 10 * 1024**3
    purge_grace_seconds: int = 3600
    blob_scan_interval_seconds: float = 3600.0
    # A miner's name stays taken this long after it was last heard from (a register with another key is refused),
    # and a pinned job waits this long for its miner before it fails `no_miner`.
    miner_active_seconds: int = 120
    max_claim_wait_seconds: int = 60
    reaper_interval_seconds: float = 1.0
    run_reaper: bool = True
    plan_limits: dict[Plan, PlanLimits] = field(default_factory=lambda: dict(DEFAULT_PLAN_LIMITS))
    # Billing: the price table and the credit a new account starts with (about 10 A100-hours, the free tier).
    prices: PriceTable = field(default_factory=PriceTable)
    welcome_credit: Decimal = Decimal("1.0")
    # Results: the coordinator's Ed25519 receipt key (replicas share one file), the retention sweeper, shares.
    coordinator_key_file: Path | None = field(default_factory=lambda: _env_path("AITBC_COORDINATOR_KEY_FILE"))
    run_results_sweeper: bool = True
    results_sweep_interval_seconds: float = 60.0
    purge_retry_seconds: int = 300
    share_default_seconds: int = 7 * 86400

    @property
    def heartbeat_seconds(self) -> int:
        """How often miners heartbeat (and the longest a held heartbeat waits): a quarter of the lease, and at
        least three beats within the lost window, so that one late beat does not make a live miner lost."""
        return max(1, min(self.lease_seconds // 4, self.miner_lost_after_seconds // 3))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'aitbc.db').resolve()}"

    @property
    def resolved_coordinator_key_file(self) -> Path:
        return self.coordinator_key_file or self.data_dir / "coordinator_ed25519.key"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
