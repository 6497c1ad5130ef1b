"""The sandbox itself, with real bwrap processes: what a job can see, reach and leave behind."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aitbc.miner.sandbox import HostUser, Mount, SandboxSpec, ScratchFolders, bwrap_argv
from tests.support.processes import all_gone


def run_sandboxed(
    script: str, job: Path, user: HostUser | None, *, network: bool = False
) -> subprocess.CompletedProcess[str]:
    spec = SandboxSpec(
        argv=["bash", "-c", script],
        mounts=[Mount(job, "/job", writable=True)],
        environment={"PATH": "/usr/bin:/bin", "HOME": "/job"},
        cwd="/job",
        network=network,
    )
    return subprocess.run(
        bwrap_argv(spec),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        user=user.uid if user else None,
        group=user.gid if user else None,
        extra_groups=[] if user else None,
    )


@pytest.fixture
def scratch_folders() -> Iterator[Callable[[Path], ScratchFolders]]:
    """ScratchFolders for a miner's work folder, removed with whatever is left in them after the test (a root
    miner's base is under /var/lib, outside the test's temporary folder)."""
    made: list[ScratchFolders] = []

    def make(work_dir: Path) -> ScratchFolders:
        made.append(ScratchFolders.for_miner(work_dir, HostUser.for_jobs()))
        return made[-1]

    yield make
    for scratch in made:
        for folder in scratch.leftovers():
            scratch.remove(folder)
        scratch.base.rmdir()


@pytest.fixture
def miner_folders(tmp_path: Path) -> dict[str, Path]:
    """A miner's folders as the agent lays them out, with a secret in each place a job must not reach."""
    work = tmp_path / "miner"
    folders = {"work": work, "state": work / "state", "jobs": work / "jobs", "data": tmp_path / "coordinator-data"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    (folders["state"] / "miner_ed25519.pem").write_text("PRIVATE KEY")
    (folders["data"] / "aitbc.db").write_text("every tenant")
    other = folders["jobs"] / "other-job" / "work"
    other.mkdir(parents=True)
    (other / "secret.txt").write_text("another tenant's input")
    return folders


def test_a_job_sees_its_own_folder_and_nothing_of_the_miner(
    miner_folders: dict[str, Path], scratch_folders: Callable[[Path], ScratchFolders]
) -> None:
    user = HostUser.for_jobs()
    scratch = scratch_folders(miner_folders["work"])
    job = scratch.create()
    paths = [*(str(p) for p in miner_folders.values()), str(miner_folders["state"] / "miner_ed25519.pem")]
    script = "; ".join(
        [
            "echo written > /job/out.txt",
            *(f'test -e "{path}" && echo "VISIBLE {path}"' for path in paths),
            f'test -e "{scratch.base}" && echo "VISIBLE scratch base"',
            # every process's command line (a zombie's is empty): only the sandbox's own can be there
            "for p in /proc/[0-9]*; do echo \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\"; done > /job/processes",
            "cat /proc/1/cmdline | tr '\\0' ' ' > /job/init",
            "env > /job/env",
            "id -u > /job/uid",
            "touch /usr/planted 2>/dev/null && echo 'WROTE /usr'",
            "true",
        ]
    )
    answer = run_sandboxed(script, job, user)
    assert answer.returncode == 0, answer.stderr
    assert "VISIBLE" not in answer.stdout
    assert "WROTE" not in answer.stdout
    assert (job / "out.txt").read_text() == "written\n"
    commands = [line for line in (job / "processes").read_text().splitlines() if line.strip()]
    programs = {line.split()[0].rsplit("/", 1)[-1] for line in commands}
    # bwrap (PID 1), bash, its subshells and `tr`: no host process (pytest, the host's init, …) in sight
    assert "bwrap" in programs and programs <= {"bwrap", "bash", "tr"}, commands
    assert "bwrap" in (job / "init").read_text()
    assert sorted(line.split("=", 1)[0] for line in (job / "env").read_text().splitlines()) == sorted(
        ["HOME", "PATH", "PWD", "SHLVL", "_"]
    )
    assert (job / "uid").read_text().strip() == "1000"
    if user is not None:  # a root miner hands the job an unprivileged host user
        assert (job / "out.txt").stat().st_uid == user.uid
        assert os.stat(job).st_uid == user.uid


def test_no_network_unless_the_operator_allows_it(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    job.chmod(0o777)
    script = "ls /sys/class/net 2>/dev/null; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"
    sealed = run_sandboxed(script, job, None)
    assert sealed.returncode == 0, sealed.stderr
    assert sealed.stdout.split() == ["lo"]
    opened = run_sandboxed(script, job, None, network=True)
    assert set(opened.stdout.split()) - {"lo"}, "with the network allowed the host's interfaces are there"


def test_a_setsid_daemon_dies_with_the_job(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    job.chmod(0o777)
    marker = f"aitbc-sandbox-daemon-{os.getpid()}-{time.monotonic_ns()}"
    answer = run_sandboxed(
        f"setsid bash -c 'exec -a {marker} sleep 300' </dev/null >/dev/null 2>&1 & sleep 0.2", job, None
    )
    assert answer.returncode == 0, answer.stderr
    assert all_gone(marker), "a process outlived its sandbox"


def test_scratch_folders_are_unguessable_and_owned_by_the_job_user(
    tmp_path: Path, scratch_folders: Callable[[Path], ScratchFolders]
) -> None:
    scratch = scratch_folders(tmp_path / "miner")
    first, second = scratch.create(), scratch.create()
    assert first != second and len(first.name) == 32
    assert oct(first.stat().st_mode & 0o777) == oct(0o700)
    assert {first, second} <= set(scratch.leftovers())
    scratch.remove(first)
    assert not first.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_capped_scratch_folder_is_a_tmpfs_of_that_size_and_goes_away_whole(
    tmp_path: Path, scratch_folders: Callable[[Path], ScratchFolders]
) -> None:
    user = HostUser.for_jobs()
    scratch = scratch_folders(tmp_path / "miner")
    folder = scratch.create(disk_mb=4)
    try:
        assert os.path.ismount(folder)
        sizes = os.statvfs(folder)
        assert sizes.f_blocks * sizes.f_frsize == 4 * 1024 * 1024
        assert user is not None and folder.stat().st_uid == user.uid
        answer = run_sandboxed("head -c 10000000 /dev/zero > /job/fill; echo $?", folder, user)
        assert answer.stdout.strip() == "1" and "No space left" in answer.stderr
        assert scratch.disk_full(folder)
    finally:
        scratch.remove(folder)
    assert not folder.exists() and not os.path.ismount(folder)
    assert scratch.leftovers() == []
