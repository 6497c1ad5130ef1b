"""Run one of our tools (ffmpeg, ffprobe) on a tenant's file inside the job sandbox, under hard limits.

A tool that parses hostile files is as dangerous as tenant code: a crafted file can make it open other paths
(an HLS playlist naming `file:///…` segments) or allocate without bound. So it gets what a `command` job gets:
bubblewrap namespaces (no network, no view of the miner's state, keys, other jobs or host processes), one
writable scratch folder bound at /job, an unprivileged host user when the miner is root, and rlimits set by
bash's `ulimit` inside the sandbox before it execs the tool: address space (memory), CPU time, file size,
open files and processes (threads count too). The limits are hard: the tool cannot raise them again.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aitbc.miner.process import LineHandler, ProcessOutcome, run_process
from aitbc.miner.runtimes.interface import RuntimeUnavailable
from aitbc.miner.sandbox import SYSTEM_FOLDERS, HostUser, Mount, SandboxSpec, bwrap_argv, bwrap_executable
from aitbc.miner.stop import StopSignal

JOB_FOLDER = "/job"  # where the scratch folder appears inside the sandbox
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# ulimit -t CPU seconds (soft, then hard), -v address space in KiB, -f file size in 1024-byte blocks, -n open
# files, -u processes. At the soft CPU limit the kernel sends SIGXCPU (ffmpeg stops and says so); at the hard
# one, a few seconds on, SIGKILL.
LIMITS_WRAPPER = (
    'ulimit -S -t "$1" && ulimit -H -t "$2" && ulimit -H -S -v "$3" && ulimit -H -S -f "$4" '
    '&& ulimit -H -S -n "$5" && ulimit -H -S -u "$6" && shift 6 && exec "$@"'
)
CPU_GRACE_SECONDS = 5


@dataclass(frozen=True)
class ToolLimits:
    """Hard limits on one tool run. `processes` counts threads: an encoder starts one per core or so."""

    memory_mb: int = 4096
    cpu_seconds: int = 3600
    file_size_mb: int = 1024
    open_files: int = 256
    processes: int = 512


class ToolSandbox:
    """Runs argv inside a fresh sandbox whose only writable (and only job) folder is `scratch`, at /job."""

    def __init__(self, user: HostUser | None, kill_grace_seconds: float = 1.0) -> None:
        self._user = user
        self._kill_grace = kill_grace_seconds
        self._bwrap = bwrap_executable()
        self._setpriv = shutil.which("setpriv") if user is not None else None
        if user is not None and self._setpriv is None:
            raise RuntimeUnavailable("a root miner needs setpriv (util-linux) to run tools as an unprivileged user")

    def argv(self, tool_argv: Sequence[str], scratch: Path, limits: ToolLimits) -> list[str]:
        """The full host command line: [setpriv …] bwrap … bash -c 'ulimit …; exec tool …'."""
        tool = tool_argv[0]
        spec = SandboxSpec(
            argv=[
                "bash",
                "-c",
                LIMITS_WRAPPER,
                "aitbc-limits",
                str(max(1, limits.cpu_seconds)),
                str(max(1, limits.cpu_seconds) + CPU_GRACE_SECONDS),
                str(limits.memory_mb * 1024),
                str(limits.file_size_mb * 1024),
                str(limits.open_files),
                str(limits.processes),
                *tool_argv,
            ],
            mounts=[Mount(scratch, JOB_FOLDER, writable=True)],
            environment={
                "PATH": SAFE_PATH,
                "HOME": JOB_FOLDER,
                "LANG": "C.UTF-8",
                # RLIMIT_AS counts reserved address space: glibc's 64 MiB arena per thread would use up the
                # memory limit on a many-core machine without using the memory.
                "MALLOC_ARENA_MAX": "2",
            },
            cwd=JOB_FOLDER,
            network=False,
            readonly_paths=[tool] if _outside_system_folders(tool) else [],
        )
        argv = bwrap_argv(spec, self._bwrap)
        if self._user is not None and self._setpriv is not None:
            argv = [
                self._setpriv,
                f"--reuid={self._user.uid}",
                f"--regid={self._user.gid}",
                "--clear-groups",
                "--no-new-privs",
                "--",
                *argv,
            ]
        return argv

    async def run(
        self,
        tool_argv: Sequence[str],
        scratch: Path,
        limits: ToolLimits,
        *,
        stop: StopSignal,
        deadline: float,
        on_stdout: LineHandler,
        on_stderr: LineHandler,
        environment: Mapping[str, str] | None = None,
    ) -> ProcessOutcome:
        """Run until the tool exits, `stop` is requested or `deadline` passes; killing bwrap (the sandbox's
        init) takes every process of the sandbox with it."""
        return await run_process(
            self.argv(tool_argv, scratch, limits),
            cwd=scratch,
            env=dict(environment or {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}),
            stop=stop,
            deadline=deadline,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            kill_grace_seconds=self._kill_grace,
        )


def _outside_system_folders(tool: str) -> bool:
    """A tool given by its path outside /usr (and /bin, …) is bound in alone; one under them, or a bare name
    found on the sandbox's PATH, is already in the read-only system."""
    path = Path(tool)
    if not path.is_absolute():
        return False
    resolved = path.resolve()
    return not any(resolved.is_relative_to(folder) for folder in SYSTEM_FOLDERS if Path(folder).is_dir())
