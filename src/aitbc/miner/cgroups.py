"""A cgroup per job (cgroup v1, as root): caps on its processes and memory, its CPU time counted across every
process it starts, and a way to kill all of them at once.

rlimits are per process (a fork bomb or a job that starts many processes gets around them) and RLIMIT_NPROC is
per user (jobs sharing a host user would share it); a cgroup holds the whole job. The miner makes one folder for
itself under its own cgroup in each controller (`aitbc-<tag>`, one tag per miner) and one per job inside it, so
a restarted miner finds what its previous run left behind and kills it.

cgroup v2 is not handled yet: on a v2-only host the miner falls back to rlimits (see `sandboxed_run`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from aitbc.miner.config import JobLimits

CGROUP_MOUNT = Path("/sys/fs/cgroup")
CONTROLLERS = ("pids", "memory", "cpuacct")
MIB = 1024 * 1024
KILL_WAIT_SECONDS = 5.0


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path in each v1 controller (`/proc/self/cgroup`: `id:controllers:path`)."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            for name in names.split(","):
                if name:
                    paths[name] = path
    return paths


def _counter(path: Path, name: str) -> int:
    """A `name value` line of a cgroup file such as pids.events or memory.oom_control; 0 when absent."""
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    return 0


@dataclass(frozen=True)
class JobCgroup:
    """One job's folder in each controller."""

    folders: dict[str, Path]

    @property
    def procs_files(self) -> list[Path]:
        """Where to write a process id to put that process (and all it starts after) into the job's cgroups."""
        return [folder / "cgroup.procs" for folder in self.folders.values()]

    def processes(self) -> set[int]:
        found: set[int] = set()
        for path in self.procs_files:
            with contextlib.suppress(OSError, ValueError):
                found |= {int(line) for line in path.read_text().split()}
        return found

    def limit_hit(self, limits: JobLimits, cpu_seconds: int) -> str | None:
        """Which limit the job ran into, as the failure message; None while it is within all of them."""
        if "pids" in self.folders and _counter(self.folders["pids"] / "pids.events", "max") > 0:
            return f"the job hit its limit of {limits.max_processes} processes"
        if "memory" in self.folders and _counter(self.folders["memory"] / "memory.oom_control", "oom_kill") > 0:
            return f"the job hit its limit of {limits.memory_mb} MiB of memory"
        if "cpuacct" in self.folders:
            with contextlib.suppress(OSError, ValueError):
                used = int((self.folders["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
                if used >= cpu_seconds:
                    return f"the job hit its limit of {cpu_seconds} CPU seconds"
        return None

    def kill_all(self) -> None:
        """SIGKILL every process in the job's cgroups until none is left (new ones cannot escape a cgroup)."""
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while (found := self.processes()) and time.monotonic() < deadline:
            for pid in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill_all()
        for folder in self.folders.values():
            deadline = time.monotonic() + KILL_WAIT_SECONDS
            while folder.exists():
                try:
                    folder.rmdir()
                except OSError:  # busy for a moment while the last processes exit
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)


@dataclass(frozen=True)
class MinerCgroups:
    """This miner's folder in each controller it may use, under its own cgroup."""

    folders: dict[str, Path]

    @classmethod
    def for_miner(cls, tag: str) -> MinerCgroups | None:
        """None where the miner may not make cgroups (not root, no v1 controllers): rlimits only then."""
        if os.geteuid() != 0:
            return None
        own = _own_cgroups()
        folders: dict[str, Path] = {}
        for controller in CONTROLLERS:
            mount = CGROUP_MOUNT / controller
            if controller not in own or not (mount / "cgroup.procs").is_file():
                continue
            folder = mount / own[controller].lstrip("/") / f"aitbc-{tag}"
            try:
                folder.mkdir(exist_ok=True)
            except OSError:
                continue
            folders[controller] = folder
        return cls(folders) if folders else None

    def create(self, name: str, limits: JobLimits) -> JobCgroup:
        folders: dict[str, Path] = {}
        try:
            for controller, parent in self.folders.items():
                folder = parent / name
                folder.mkdir(parents=True)
                folders[controller] = folder
            if "pids" in folders:
                (folders["pids"] / "pids.max").write_text(str(limits.max_processes))
            if "memory" in folders:
                memory = folders["memory"]
                (memory / "memory.limit_in_bytes").write_text(str(limits.memory_mb * MIB))
                swap = memory / "memory.memsw.limit_in_bytes"  # memory + swap: no way around the cap by swapping
                if swap.exists():
                    swap.write_text(str(limits.memory_mb * MIB))
        except OSError:
            JobCgroup(folders).remove()
            raise
        return JobCgroup(folders)

    def close(self) -> None:
        """Remove this miner's folders once no job cgroup is left in them."""
        for folder in self.folders.values():
            with contextlib.suppress(OSError):
                folder.rmdir()

    def leftovers(self) -> list[JobCgroup]:
        """The job cgroups of a previous run of this miner (none of this run's jobs has started yet)."""
        names = {
            child.name
            for parent in self.folders.values()
            if parent.is_dir()
            for child in parent.iterdir()
            if child.is_dir()
        }
        found = [
            JobCgroup({controller: parent / name for controller, parent in self.folders.items()}) for name in names
        ]
        return [JobCgroup({c: f for c, f in job.folders.items() if f.is_dir()}) for job in found]
