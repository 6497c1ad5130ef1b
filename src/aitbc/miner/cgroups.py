"""A cgroup per job: caps on its processes and memory, its CPU time counted across every process it starts,
and a way to kill all of them at once.

rlimits are per process (a fork bomb or a job that starts many processes gets around them) and RLIMIT_NPROC is
per user (jobs sharing a host user would share it); a cgroup holds the whole job. The miner makes one folder for
itself under its own cgroup (`aitbc-<tag>`, one tag per miner) and one per job inside it, so a restarted miner
finds what its previous run left behind and kills it.

Both hierarchies are used where the miner may write to them: cgroup v1 controllers as root, and the cgroup v2
(unified) hierarchy as root or where it is delegated to the miner's user (systemd's `Delegate=yes`, a
container's own cgroup). A controller lives in one hierarchy only, so each cap comes from whichever has it; v2
also counts every cgroup's CPU time (`cpu.stat`, no controller needed) and kills a whole cgroup in one write
(`cgroup.kill`, no race with a job that keeps forking). Whatever no cgroup caps, rlimits do (`sandboxed_run`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from aitbc.miner.config import JobLimits

CGROUP_MOUNT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("pids", "memory", "cpuacct")
V2_CONTROLLERS = ("memory", "pids")
UNIFIED = "unified"  # a job's cgroup v2 folder, among its v1 folders named by controller
MIB = 1024 * 1024
KILL_WAIT_SECONDS = 5.0


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path in each hierarchy (`/proc/self/cgroup`: `id:controllers:path`; the v2 line
    has no controllers and is returned as `unified`)."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, names, path = line.split(":", 2)
            if hierarchy == "0" and not names:
                paths[UNIFIED] = path
            for name in names.split(","):
                if name:
                    paths[name] = path
    return paths


def _unified_mount() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on a v2-only host, /sys/fs/cgroup/unified on a
    hybrid one like this; None without one."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return Path(fields[1])
    return None


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
    """One job's folder in each v1 controller, and in the v2 hierarchy (`UNIFIED`)."""

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

    def _unified_file(self, name: str) -> Path | None:
        """A file of the job's v2 folder, if the job has one and its controller is enabled there."""
        unified = self.folders.get(UNIFIED)
        return unified / name if unified is not None and (unified / name).exists() else None

    def caps(self, resource: str) -> bool:
        """Whether a cgroup caps `resource` ("pids" or "memory") across all of the job's processes."""
        return resource in self.folders or self._unified_file(f"{resource}.max") is not None

    def cpu_seconds_used(self) -> float | None:
        """CPU time of every process the job ran, living or gone; None where no cgroup counts it."""
        with contextlib.suppress(OSError, ValueError):
            if (stat := self._unified_file("cpu.stat")) is not None:
                return _counter(stat, "usage_usec") / 1e6
            if "cpuacct" in self.folders:
                return int((self.folders["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        return None

    def _events(self, v1_file: str, v1_name: str, v2_file: str, v2_name: str) -> int:
        controller = v1_file.partition(".")[0]
        count = _counter(self.folders[controller] / v1_file, v1_name) if controller in self.folders else 0
        if (events := self._unified_file(v2_file)) is not None:
            count += _counter(events, v2_name)
        return count

    def limit_hit(self, limits: JobLimits, cpu_seconds: int) -> str | None:
        """Which limit the job ran into, as the failure message; None while it is within all of them."""
        if self._events("pids.events", "max", "pids.events", "max") > 0:
            return f"the job hit its limit of {limits.max_processes} processes"
        if self._events("memory.oom_control", "oom_kill", "memory.events", "oom_kill") > 0:
            return f"the job hit its limit of {limits.memory_mb} MiB of memory"
        used = self.cpu_seconds_used()
        if used is not None and used >= cpu_seconds:
            return f"the job hit its limit of {cpu_seconds} CPU seconds"
        return None

    def kill_all(self) -> None:
        """SIGKILL every process in the job's cgroups until none is left (new ones cannot escape a cgroup)."""
        if (kill := self._unified_file("cgroup.kill")) is not None:
            with contextlib.suppress(OSError):
                kill.write_text("1")  # the kernel kills all of them at once, forks in flight included
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while (found := self.processes()) and time.monotonic() < deadline:
            for pid in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def set_limits(self, limits: JobLimits) -> None:
        """Write the caps to every cgroup file that has them (a job in both hierarchies gets each cap once)."""
        memory = str(limits.memory_mb * MIB)
        if "pids" in self.folders:
            (self.folders["pids"] / "pids.max").write_text(str(limits.max_processes))
        if "memory" in self.folders:
            (self.folders["memory"] / "memory.limit_in_bytes").write_text(memory)
            swap = self.folders["memory"] / "memory.memsw.limit_in_bytes"  # memory + swap: no way around by swapping
            if swap.exists():
                swap.write_text(memory)
        if (pids := self._unified_file("pids.max")) is not None:
            pids.write_text(str(limits.max_processes))
        if (cap := self._unified_file("memory.max")) is not None:
            cap.write_text(memory)
            for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):  # no swapping around the cap;
                if (path := self._unified_file(name)) is not None:  # an OOM ends the whole job, not one process of it
                    path.write_text(value)

    def remove(self) -> None:
        self.kill_all()
        for folder in self.folders.values():
            deadline = time.monotonic() + KILL_WAIT_SECONDS
            pause = 0.001
            while folder.exists():
                try:
                    folder.rmdir()
                except OSError:  # busy for a moment while the last processes exit: usually a millisecond or two
                    if time.monotonic() > deadline:
                        break
                    time.sleep(pause)
                    pause = min(pause * 2, 0.02)


def _v1_folders(own: dict[str, str], tag: str) -> dict[str, Path]:
    """The miner's folder in each v1 controller it may write to (root only: v1 is never delegated)."""
    folders: dict[str, Path] = {}
    if os.geteuid() != 0:
        return folders
    for controller in V1_CONTROLLERS:
        mount = CGROUP_MOUNT / controller
        if controller not in own or not (mount / "cgroup.procs").is_file():
            continue
        folder = mount / own[controller].lstrip("/") / f"aitbc-{tag}"
        try:
            folder.mkdir(exist_ok=True)
        except OSError:
            continue
        folders[controller] = folder
    return folders


def _enable_controllers(parent: Path, folder: Path, tag: str) -> None:
    """Hand the memory and pids controllers down to the job cgroups, where the parent has them.

    v2 lets a cgroup pass controllers to its children only while no process sits in it ("no internal
    processes"), so a miner alone in its delegated cgroup first moves itself into a leaf of its own, as
    systemd asks of delegated services. Where that does not work either, the jobs get no cgroup caps, and the
    rlimits cap them instead."""
    with contextlib.suppress(OSError):
        available = set((parent / "cgroup.controllers").read_text().split())
        wanted = " ".join(f"+{name}" for name in V2_CONTROLLERS if name in available)
        if not wanted:
            return
        try:
            (parent / "cgroup.subtree_control").write_text(wanted)
        except OSError as error:
            if error.errno != errno.EBUSY:
                return
            leaf = parent / f"aitbc-{tag}-agent"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (parent / "cgroup.subtree_control").write_text(wanted)
        (folder / "cgroup.subtree_control").write_text(wanted)


def _unified_folder(own: dict[str, str], tag: str) -> Path | None:
    """The miner's folder in the v2 hierarchy, where it may make one (root, or its cgroup is delegated)."""
    mount = _unified_mount()
    if mount is None or UNIFIED not in own:
        return None
    parent = mount / own[UNIFIED].lstrip("/")
    if not os.access(parent, os.W_OK) or not os.access(parent / "cgroup.procs", os.W_OK):
        return None
    folder = parent / f"aitbc-{tag}"
    try:
        folder.mkdir(exist_ok=True)
    except OSError:
        return None
    _enable_controllers(parent, folder, tag)
    return folder


@dataclass(frozen=True)
class MinerCgroups:
    """This miner's folder in each hierarchy (and v1 controller) it may use, under its own cgroup."""

    folders: dict[str, Path]

    @classmethod
    def for_miner(cls, tag: str) -> MinerCgroups | None:
        """None where the miner may not make cgroups (not root and no delegated v2 cgroup): rlimits only then."""
        own = _own_cgroups()
        folders = _v1_folders(own, tag)
        if (unified := _unified_folder(own, tag)) is not None:
            folders[UNIFIED] = unified
        return cls(folders) if folders else None

    def create(self, name: str, limits: JobLimits) -> JobCgroup:
        folders: dict[str, Path] = {}
        try:
            for hierarchy, parent in self.folders.items():
                folder = parent / name
                folder.mkdir(parents=True)
                folders[hierarchy] = folder
            job = JobCgroup(folders)
            job.set_limits(limits)
        except OSError:
            JobCgroup(folders).remove()
            raise
        return job

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
        found = [JobCgroup({hierarchy: parent / name for hierarchy, parent in self.folders.items()}) for name in names]
        return [JobCgroup({h: f for h, f in job.folders.items() if f.is_dir()}) for job in found]
