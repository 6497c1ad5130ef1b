"""`aitbc serve --miners N` gives a working system in one command; a miner outlives an absent coordinator."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from aitbc.cli.local_miners import local_miner_work_dir
from tests.miner.ai_extra import needs_ai
from tests.support.processes import processes_with
from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def local_stack(root: Path) -> Stack:
    """A stack whose local miners keep their folders under `root` (they live outside the data folder)."""
    stack = Stack(root)
    stack.environment["XDG_STATE_HOME"] = str(root / "state")
    return stack


def local_work_dir(stack: Stack, name: str) -> Path:
    return local_miner_work_dir(stack.data_dir, name, Path(stack.environment["XDG_STATE_HOME"]))


@needs_ai
def test_serve_with_local_miners_runs_command_and_ai_jobs(tmp_path: Path) -> None:
    stack = local_stack(tmp_path)
    try:
        stack.start_server("--miners", "1", "--allow-command")
        work_dir = str(local_work_dir(stack, "local-1"))
        command_job = stack.submit("--type", "command", "--input", "echo hello from a local miner")
        embedding_job = stack.post_job(type="embedding", input=["a cat", "a dog"])
        assert stack.wait_status(command_job, {"completed", "failed"}, timeout=60)["status"] == "completed"
        assert stack.package(command_job).files["result.txt"] == b"hello from a local miner\n"
        with stack.admin() as http:  # the marketplace shows the local miner in the region "local"
            offers = http.get("/v1/marketplace/gpus").json()["offers"]
        assert [(offer["name"], offer["region"]) for offer in offers] == [("local-1", "local")]
        done = stack.wait_status(embedding_job, {"completed", "failed"}, timeout=90)
        assert done["status"] == "completed", done
        assert json.loads(stack.package(embedding_job).files["result.txt"])["dimensions"] == 384
        assert processes_with(work_dir)

        # SIGTERM (or Ctrl-C): the miners stop first, while the coordinator still answers, and hand back what
        # they were running; then the coordinator stops.
        running = stack.post_job(type="command", input="sleep 600")
        stack.wait_status(running, {"running"}, timeout=20)
        assert stack.server is not None
        stack.server.send_signal(signal.SIGTERM)
        assert stack.server.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it stopped on
        stack.server = None
        assert not processes_with(work_dir)
        handed_back = stack.job_while_stopped(running)
        assert handed_back.status.value == "pending" and "shut down" in (handed_back.error or "")
    finally:
        stack.close()


def test_local_miners_exit_when_serve_is_killed(tmp_path: Path) -> None:
    stack = local_stack(tmp_path)
    try:
        stack.start_server("--miners", "1")
        work_dir = str(local_work_dir(stack, "local-1"))
        wait_until(lambda: processes_with(work_dir), timeout=10, what="the local miner")
        # Killed outright (no chance to clean up), serve's miners still notice their parent is gone and exit.
        stack.stop_server(signal.SIGKILL)
        wait_until(lambda: not processes_with(work_dir), timeout=15, what="the local miner to exit with serve")
    finally:
        stack.close()


def test_a_miner_started_before_its_coordinator_waits_and_then_works(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        stack.make_miner_key()
        stack.start_miner("early", "--allow-command")
        wait_until(lambda: "retrying" in stack.miner_log("early"), timeout=20, what="the miner to retry")
        stack.start_server()
        job_id = stack.post_job(type="command", input="echo late coordinator")
        assert stack.wait_status(job_id, {"completed", "failed"}, timeout=30)["status"] == "completed"
    finally:
        stack.close()
