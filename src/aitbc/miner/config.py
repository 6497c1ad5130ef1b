"""The miner's settings: built once from flags and environment by `aitbc miner run`, then passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aitbc.domain.matching import Gpu

DEFAULT_RUNTIMES = ("command", "embedding", "text-generation", "reencode")


@dataclass(frozen=True)
class CommandLimits:
    """Limits on a `command` job's processes, on top of the job's own timeout (wall time)."""

    cpu_seconds: int | None = None  # None: the job's timeout
    memory_mb: int = 4096
    file_size_mb: int = 1024
    open_files: int = 1024


@dataclass(frozen=True)
class MinerConfig:
    url: str
    api_key: str
    name: str
    work_dir: Path
    runtimes: tuple[str, ...] | None = None  # None: every runtime that can run here
    allow_command: bool = False
    max_jobs: int = 1
    gpus: tuple[Gpu, ...] = ()
    models: dict[str, Path] = field(default_factory=dict)
    ollama_url: str | None = None
    drain: bool = False
    claim_wait_seconds: float = 20.0
    drain_wait_seconds: float = 1.0
    report_interval_seconds: float = 1.0
    kill_grace_seconds: float = 1.0
    shutdown_grace_seconds: float = 10.0
    command_limits: CommandLimits = field(default_factory=CommandLimits)
    command_user: str | None = None  # run command jobs as this unprivileged user (the miner runs as root)
    parent_pid: int | None = None  # stop when this process is gone (miners started by `aitbc serve`)

    @property
    def state_dir(self) -> Path:
        return self.work_dir / "state"

    @property
    def jobs_dir(self) -> Path:
        return self.work_dir / "jobs"
