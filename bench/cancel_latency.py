"""How long from typing `aitbc client cancel` to the job's processes being gone, with real processes.

    PYTHONPATH=. .venv/bin/python bench/cancel_latency.py [--runs 3]

Starts `aitbc serve` and one `aitbc miner run --allow-command` (the test suite's `Stack`), runs a
`sleep 600` command job that records its pid, then times the CLI cancel until the pid is gone and until the
job is `canceled`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.processes import process_gone
from tests.support.stack import Stack
from tests.support.waiting import wait_until

AITBC = str(Path(sys.executable).with_name("aitbc"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    stack = Stack(Path(tempfile.mkdtemp()))
    try:
        stack.start_server()
        stack.start_miner("bench", "--allow-command", "--runtimes", "command", "--claim-wait", "2")
        for _ in range(options.runs):
            job = stack.post_job(type="command", input="echo $$ > pid.txt; sleep 600")
            stack.wait_status(job, {"running"}, timeout=30)
            pid_file = wait_until(lambda: next(iter(stack.work_dir("bench").rglob("pid.txt")), None), 10)
            pid = int(wait_until(lambda pid_file=pid_file: pid_file.read_text().strip() or None, 5))
            started = time.monotonic()
            subprocess.run(
                [AITBC, "client", "cancel", "--job-id", job, "--force"],
                env=stack.environment,
                capture_output=True,
                check=True,
            )
            wait_until(lambda pid=pid: process_gone(pid), 10, interval=0.01)
            gone = time.monotonic() - started
            stack.wait_status(job, {"canceled"}, timeout=10)
            canceled = time.monotonic() - started
            print(f"`aitbc client cancel` → process gone in {gone:.2f} s, job canceled in {canceled:.2f} s")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
