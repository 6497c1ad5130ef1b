"""Job isolation as an operator runs it: a real `aitbc miner run` started the way the README starts it (key in
its environment, or on its command line), a real coordinator, and what a job can and cannot reach."""

from __future__ import annotations

import os
import stat

import pytest

from aitbc.domain.job import split_stderr_tail
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_job_finds_no_api_key_anywhere_it_can_look(stack: Stack) -> None:
    key = stack.make_miner_key()
    # The key in the miner's environment (as start_miner passes it) and on its command line as well.
    stack.start_miner("m1", "--allow-command", "--api-key", key)
    script = (
        "env\n"
        "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < $f; echo; done 2>/dev/null\n"
        "cat ~/../../proc/1/cmdline 2>/dev/null | tr '\\0' ' '; echo\n"
        "ls /proc | grep -cE '^[0-9]+$'\n"
    )
    job_id = stack.post_job(type="command", input=script)
    done = stack.wait_status(job_id, {"completed", "failed"}, timeout=30)
    assert done["status"] == "completed", done
    files = stack.package(job_id).files
    seen = files["result.txt"].decode()
    assert "AITBC_RESULT_FILE=/job/output/result.txt" in seen  # it did read its own environment
    assert "bwrap" in seen  # and /proc: its own PID namespace, where the sandbox is process 1
    assert int(seen.split()[-1]) <= 6  # a handful of processes, none of the host's
    assert all(key.encode() not in data and b"aitbc_" not in data for data in files.values())

    work_dir = stack.work_dir("m1")
    assert stat.S_IMODE(work_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((work_dir / "state").stat().st_mode) == 0o700
    for name in ("miner_ed25519.pem", "miner_ed25519.pub", "miner.json"):
        assert stat.S_IMODE((work_dir / "state" / name).stat().st_mode) == 0o600, name


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and tmpfs job folders need a root miner")
def test_the_limit_flags_of_miner_run_hold_and_the_miner_keeps_working(stack: Stack) -> None:
    stack.start_miner("m1", "--allow-command", "--max-processes", "40", "--max-disk", "8", "--max-memory", "256")
    bomb = stack.post_job(type="command", input="bomb() { bomb | bomb; }; bomb")
    filler = stack.post_job(type="command", input="head -c 100000000 /dev/zero > fill; sleep 120")
    after = stack.post_job(type="command", input="ulimit -f; echo still working")
    for job_id, reason in ((bomb, "40 processes"), (filler, "8 MiB of disk")):
        job = stack.wait_status(job_id, {"completed", "failed"}, timeout=60)
        assert (job["status"], split_stderr_tail(job["error"])[0]) == (
            "failed",
            f"the job hit its limit of {reason}",
        ), job
    done = stack.wait_status(after, {"completed", "failed"}, timeout=30)
    assert done["status"] == "completed", done
    assert stack.package(after).files["result.txt"] == b"8192\nstill working\n"
