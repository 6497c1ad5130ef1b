"""The miner's settings: built once from flags and environment by `aitbc miner run`, then passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aitbc.domain.matching import Gpu

DEFAULT_RUNTIMES = ("command", "embedding", "text-generation", "reencode")


@dataclass(frozen=True)
class JobLimits:
    """What one sandboxed job may use, on top of its own timeout (wall time). Enforced with cgroups where the
    miner may make them (processes, memory, CPU), a size-capped tmpfs for its folder as root (disk), and
    rlimits otherwise; a job that hits one is stopped and fails with the limit named."""

    max_processes: int = 1024  # threads count too (a many-core machine starts as many BLAS threads)
    memory_mb: int = 4096
    cpu_seconds: int | None = None  # None: the job's timeout
    disk_mb: int = 4096
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
    region: str | None = None  # where this miner is, as the marketplace shows it (`us-west`)
    models: dict[str, Path] = field(default_factory=dict)
    ollama_url: str | None = None
    drain: bool = False
    claim_wait_seconds: float = 20.0
    drain_wait_seconds: float = 1.0
    report_interval_seconds: float = 1.0
    kill_grace_seconds: float = 1.0
    shutdown_grace_seconds: float = 10.0
    job_limits: JobLimits = field(default_factory=JobLimits)
    command_user: str | None = None  # run jobs as this unprivileged host user (the miner runs as root)
    job_network: bool = False  # jobs get the host's network (else a network namespace with only loopback)
    sandbox_dir: Path | None = None  # where job folders live while they run (default: see ScratchFolders)
    parent_pid: int | None = None  # stop when this process is gone (miners started by `aitbc serve`)
    model_cache_bytes: int | None = None  # loaded AI models kept within this (None: half the RAM or GPU memory)
    max_models: int | None = None  # and at most this many (None: no count cap, unless the RAM cannot be read)

    @property
    def state_dir(self) -> Path:
        return self.work_dir / "state"

    @property
    def jobs_dir(self) -> Path:
        return self.work_dir / "jobs"
