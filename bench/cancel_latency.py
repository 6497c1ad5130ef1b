"""How long from typing `aitbc client cancel` (or POSTing the cancel) to the job's processes being gone, with
real processes.

    PYTHONPATH=. .venv/bin/python bench/cancel_latency.py [--runs 3] [--via cli|http]

Starts `aitbc serve` and one `aitbc miner run --allow-command` (the test suite's `Stack`), runs a
`sleep 600` command job, finds its pid by name, then times the cancel until the pid is gone and until the
job is `canceled`. `--via cli` includes the CLI's start-up; `--via http` is the coordinator and miner alone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from tests.support.processes import process_gone, processes_named, unique_marker
from tests.support.stack import Stack
from tests.support.waiting import wait_until

AITBC = str(Path(sys.executable).with_name("aitbc"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--via", choices=["cli", "http"], default="cli")
    options = parser.parse_args()
    stack = Stack(Path(tempfile.mkdtemp()))
    try:
        stack.start_server()
        stack.start_miner("bench", "--allow-command", "--runtimes", "command", "--claim-wait", "2")
        for _ in range(options.runs):
            marker = unique_marker()  # the job's pid inside its sandbox means nothing out here: find it by name
            job = stack.post_job(type="command", input=f"(exec -a {marker} sleep 600) &\nwait\n")
            stack.wait_status(job, {"running"}, timeout=30)
            pid = wait_until(lambda marker=marker: processes_named(marker), 10)[0]
            started = time.monotonic()
            if options.via == "cli":
                subprocess.run(
                    [AITBC, "client", "cancel", "--job-id", job, "--force"],
                    env=stack.environment,
                    capture_output=True,
                    check=True,
                )
            else:
                headers = {"X-Api-Key": stack.client_key}
                httpx.post(f"{stack.url}/v1/jobs/{job}/cancel", headers=headers, timeout=10).raise_for_status()
            wait_until(lambda pid=pid: process_gone(pid), 10, interval=0.01)
            gone = time.monotonic() - started
            stack.wait_status(job, {"canceled"}, timeout=10)
            canceled = time.monotonic() - started
            how = "`aitbc client cancel`" if options.via == "cli" else "POST /v1/jobs/{id}/cancel"
            print(f"{how} → process gone in {gone:.2f} s, job canceled in {canceled:.2f} s")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
