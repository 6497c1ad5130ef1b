"""Finding the processes a test started (miners, jobs in their sandboxes) from the host, and waiting for
them to go."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from tests.support.waiting import wait_until


def processes_named(marker: str) -> list[int]:
    """Host pids of processes whose command line holds `marker` (a job names its own with `exec -a`: its pid
    inside its sandbox means nothing out here)."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in found.split()]


def processes_with(argument: str) -> list[int]:
    """Host pids of processes with `argument` as one whole argument of their command line."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if argument in cmdline.read_bytes().decode(errors="replace").split("\0"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def all_gone(marker: str, timeout: float = 10) -> bool:
    """Whether every process named `marker` is gone, waiting a little: the kernel kills what is left in a PID
    namespace as its first process dies, and those processes take a moment to exit."""
    wait_until(lambda: not processes_named(marker), timeout, what=f"the processes named {marker} to end")
    return True


def unique_marker() -> str:
    return f"aitbc-test-{uuid.uuid4().hex}"


def process_gone(pid: int) -> bool:
    """Gone, or a zombie waiting for a parent that no longer cares (it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def job_folder(work_dir: Path, timeout: float = 20) -> Path:
    """The scratch folder of the one job a miner with this work dir is running (seen from the host, as root:
    a test reaches into it to let the job go on, as the job itself cannot see any of the host's folders)."""
    from aitbc.miner.sandbox import HostUser, ScratchFolders

    base = ScratchFolders.default_base(work_dir, HostUser.for_jobs())

    def one() -> Path | None:
        found = [path for path in base.iterdir() if path.is_dir()] if base.is_dir() else []
        return found[0] if len(found) == 1 and (found[0] / "work").is_dir() else None

    return wait_until(one, timeout, what=f"a job folder under {base}")
