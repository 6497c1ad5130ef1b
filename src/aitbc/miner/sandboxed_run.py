"""Run one job process in its sandbox, under the job's limits, and leave nothing of it behind.

Limits, strongest first: a cgroup per job, as root or where cgroup v2 is delegated to the miner (processes,
memory, CPU time of all its processes), that the process joins before it can fork; a tmpfs of the job's disk
size as its folder as root; rlimits set inside the sandbox before the job's program starts (CPU time per
process, SIGXCPU first, open files, file size, and address space and process count where no cgroup caps them);
a watchdog that stops the job once it has hit one, so it fails at once with the limit named instead of
thrashing until its timeout. Every sandboxed process of a miner runs here: `command` jobs' scripts, and
`reencode`'s ffprobe and ffmpeg.

Order of the command line, outside in: `sh` (as the miner's user) writes its own pid into the job's cgroups and
execs `setpriv`, which drops to the job's host user and execs `bwrap`; so everything the job runs is in its
cgroups and nothing of it ever runs as root. Stopping the job signals bwrap, and with it goes the whole PID
namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from aitbc.miner.cgroups import MIB, JobCgroup, MinerCgroups
from aitbc.miner.config import JobLimits, MinerConfig
from aitbc.miner.process import LineHandler, ProcessOutcome, run_process
from aitbc.miner.sandbox import (
    DEFAULT_ROOT_SCRATCH,
    HostUser,
    SandboxSpec,
    ScratchFolders,
    bwrap_argv,
    check_sandbox,
    miner_tag,
)
from aitbc.miner.stop import StopReason, StopSignal

log = logging.getLogger(__name__)
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
WATCH_SECONDS = 0.25
WALKS_EVERY = 4  # an uncapped folder is measured every 4th check (a walk costs more than reading a counter)
SIGXCPU, SIGXFSZ = 24, 25
# The CPU rlimit is soft first (SIGXCPU: a program such as ffmpeg stops and says why; bash dies of it and its
# exit code names it), then hard this much later (SIGKILL, for a program that ignores SIGXCPU).
CPU_GRACE_SECONDS = 5


@dataclass(frozen=True)
class Isolation:
    """How this miner seals jobs off, decided once at start: where their folders go, which host user runs
    them, which cgroups it may make, their limits, and whether they get the network."""

    scratch: ScratchFolders
    user: HostUser | None
    cgroups: MinerCgroups | None
    limits: JobLimits
    network: bool = False

    @classmethod
    def for_miner(cls, config: MinerConfig) -> Isolation:
        """Check that the sandbox starts here (raises RuntimeUnavailable saying what to do if not)."""
        user = HostUser.for_jobs(config.command_user)
        check_sandbox(user)
        tag = miner_tag(config.work_dir)
        base = config.sandbox_dir / tag if config.sandbox_dir is not None else None
        scratch = ScratchFolders.for_miner(config.work_dir, user, base)
        cgroups = MinerCgroups.for_miner(tag)
        log.info(
            "jobs run in bubblewrap as %s; limits by %s; disk by %s; network %s",
            f"uid {user.uid}" if user else "this miner's user",
            f"cgroups ({', '.join(cgroups.folders)}) and rlimits" if cgroups else "rlimits only (no cgroup to use)",
            "a tmpfs per job" if scratch.can_cap_disk else "a watchdog on each job's folder",
            "allowed" if config.job_network else "off",
        )
        return cls(scratch, user, cgroups, config.job_limits, config.job_network)

    def close(self) -> None:
        """Remove this miner's (empty) folders for job cgroups and scratch folders."""
        if self.cgroups is not None:
            self.cgroups.close()
        with contextlib.suppress(OSError):
            self.scratch.base.rmdir()


@dataclass(frozen=True)
class SandboxOutcome:
    process: ProcessOutcome
    limit: str | None  # the limit the job ran into, as its failure message


def rlimits_argv(limits: JobLimits, cpu_seconds: int, cgroup: JobCgroup | None) -> list[str]:
    """bash's `ulimit` (hard and soft: the job cannot raise them again), then exec of the job's program."""
    cpu = [f"ulimit -S -t {int(cpu_seconds)}", f"ulimit -H -t {int(cpu_seconds) + CPU_GRACE_SECONDS}"]
    settings = [("n", limits.open_files), ("f", limits.disk_mb * 1024)]
    if cgroup is None or not cgroup.caps("memory"):
        settings.append(("v", limits.memory_mb * 1024))
    if cgroup is None or not cgroup.caps("pids"):
        settings.append(("u", limits.max_processes))
    line = " && ".join([*cpu, *(f"ulimit -H -S -{flag} {int(value)}" for flag, value in settings)])
    return ["bash", "-c", f'{line} && exec "$@"', "aitbc-limits"]


def sandbox_command(spec: SandboxSpec, user: HostUser | None, cgroup: JobCgroup | None) -> list[str]:
    argv = bwrap_argv(spec)
    if user is not None:
        argv = [
            "setpriv",
            f"--reuid={user.uid}",
            f"--regid={user.gid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
            *argv,
        ]
    if cgroup is not None:
        argv = ["sh", "-c", JOIN_CGROUPS, "aitbc-join", *(str(path) for path in cgroup.procs_files), "--", *argv]
    return argv


def _limit_hit(
    isolation: Isolation, limits: JobLimits, folder: Path, cgroup: JobCgroup | None, cpu_seconds: int, walk: bool
) -> str | None:
    if cgroup is not None and (hit := cgroup.limit_hit(limits, cpu_seconds)):
        return hit
    over = isolation.scratch.disk_full(folder) or (
        walk and not isolation.scratch.can_cap_disk and ScratchFolders.used_bytes(folder) > limits.disk_mb * MIB
    )
    return f"the job hit its limit of {limits.disk_mb} MiB of disk" if over else None


async def _watch(
    isolation: Isolation,
    limits: JobLimits,
    folder: Path,
    cgroup: JobCgroup | None,
    cpu_seconds: int,
    stop: StopSignal,
) -> str | None:
    checks = 0
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        checks += 1
        walk = checks % WALKS_EVERY == 0
        hit = await asyncio.to_thread(_limit_hit, isolation, limits, folder, cgroup, cpu_seconds, walk)
        if hit is not None:
            stop.request(StopReason.LIMIT)
            return hit


def _signal_limit(exit_code: int, limits: JobLimits, cpu_seconds: int) -> str | None:
    """A process killed by an rlimit's signal (bwrap reports 128 + signal)."""
    if exit_code in (-SIGXCPU, 128 + SIGXCPU):
        return f"the job hit its limit of {cpu_seconds} CPU seconds"
    if exit_code in (-SIGXFSZ, 128 + SIGXFSZ):
        return f"the job hit its limit of {limits.disk_mb} MiB of disk"
    return None


async def run_in_sandbox(
    isolation: Isolation,
    folder: Path,
    spec: SandboxSpec,
    *,
    cpu_seconds: int,
    stop: StopSignal,
    deadline: float,
    on_stdout: LineHandler,
    on_stderr: LineHandler,
    kill_grace_seconds: float = 1.0,
    limits: JobLimits | None = None,
) -> SandboxOutcome:
    """Run `spec` (its mounts under `folder`, a folder from `isolation.scratch`) until it exits, `stop` is
    requested, `deadline` passes or it hits a limit; when this returns, no process of it is left.

    `limits` replaces the miner's job limits for this one process (a step that needs less, such as ffprobe's
    look at a file); `spec.environment` is the whole environment inside (MALLOC_ARENA_MAX and the like)."""
    limits = limits or isolation.limits
    cgroup = await asyncio.to_thread(isolation.cgroups.create, folder.name, limits) if isolation.cgroups else None
    inner = replace(spec, argv=[*rlimits_argv(limits, cpu_seconds, cgroup), *spec.argv])
    local = StopSignal()  # the job's own stop, or the watchdog's
    forward = asyncio.create_task(stop.wait())

    def pass_on(done: asyncio.Task[StopReason]) -> None:
        if not done.cancelled():
            local.request(done.result())

    forward.add_done_callback(pass_on)
    watch = asyncio.create_task(_watch(isolation, limits, folder, cgroup, cpu_seconds, local))
    limit: str | None = None
    try:
        outcome = await run_process(
            sandbox_command(inner, isolation.user, cgroup),
            cwd=Path("/"),
            env={"PATH": SAFE_PATH},
            stop=local,
            deadline=deadline,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            kill_grace_seconds=kill_grace_seconds,
        )
    finally:
        forward.cancel()
        if watch.done() and not watch.cancelled():
            limit = watch.result()
        watch.cancel()
        if limit is None:
            limit = await asyncio.to_thread(_limit_hit, isolation, limits, folder, cgroup, cpu_seconds, True)
        if cgroup is not None:
            await asyncio.to_thread(cgroup.remove)
    if limit is None and outcome.stopped is None:
        limit = _signal_limit(outcome.exit_code, limits, cpu_seconds)
    return SandboxOutcome(outcome, limit)


def clear_leftovers(config: MinerConfig, bases: Sequence[Path] = ()) -> int:
    """Kill every process a previous run of this miner left in its job cgroups, and remove its job folders
    (unmounting them first). Run at start, before any job of this run exists. Returns how many it found."""
    tag = miner_tag(config.work_dir)
    found = 0
    cgroups = MinerCgroups.for_miner(tag)
    if cgroups is not None:
        for leftover in cgroups.leftovers():
            leftover.remove()
            found += 1
        cgroups.close()
    candidates = {config.work_dir / "sandboxes", DEFAULT_ROOT_SCRATCH / tag, *bases}
    if config.sandbox_dir is not None:
        candidates.add(config.sandbox_dir / tag)
    for base in candidates:
        if base.is_dir() and not base.is_symlink():
            scratch = ScratchFolders(base, None)
            for folder in scratch.leftovers():
                scratch.remove(folder)
                found += 1
            with contextlib.suppress(OSError):
                base.rmdir()  # made again when a job needs it
    return found
