"""Miners and coordinators die: a killed miner's job finishes elsewhere, a coordinator restart loses nothing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from tests.miner.conftest import Stack, stored_package, wait_until

pytestmark = pytest.mark.e2e


def test_a_killed_miners_job_goes_back_to_the_queue_and_another_miner_completes_it(
    short_lease_stack: Stack, tmp_path: Path
) -> None:
    stack = short_lease_stack
    group_file = tmp_path / "first-attempt.pgid"
    first = stack.start_miner("first", "--allow-command")
    script = f"""
echo "attempt $AITBC_ATTEMPT" > "$AITBC_RESULT_FILE"
if [ "$AITBC_ATTEMPT" = 1 ]; then echo $$ > {group_file}; sleep 60; fi
echo finished
"""
    job_id = stack.post_job(type="command", input=script)
    running = stack.wait_status(job_id, {"running"}, timeout=20)
    first_miner = running["miner_id"]
    wait_until(group_file.exists, timeout=10, what="the first attempt to start")
    try:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        requeued = stack.wait_status(job_id, {"pending"}, timeout=stack.lease_seconds + 5)
        assert requeued["attempt"] == 1
        assert "lost" in requeued["error"]

        stack.start_miner("second", "--allow-command")
        done = stack.wait_status(job_id, {"completed", "failed"}, timeout=20)
        assert done["status"] == "completed", done
        assert done["attempt"] == 2
        assert done["miner_id"] != first_miner
        record, files = stored_package(stack, job_id)
        assert files["result.txt"] == b"attempt 2\n"
        assert record["miner_id"] == done["miner_id"]
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(group_file.read_text()), signal.SIGKILL)  # the dead miner's orphaned script

    # The first miner comes back: it reports the job it lost as handed back, and the coordinator refuses it.
    again = stack.start_miner("first", "--allow-command", "--drain")
    assert again.wait(timeout=30) == 0, stack.miner_log("first")
    assert "refused" in stack.miner_log("first")
    assert stack.job(job_id)["status"] == "completed"
    assert stored_package(stack, job_id)[1]["result.txt"] == b"attempt 2\n"


def test_a_coordinator_restart_in_the_middle_of_a_job_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    go = tmp_path / "go"
    stack.start_miner("m1", "--allow-command")
    script = f"""
echo AITBC_PROGRESS=20
while [ ! -f {go} ]; do sleep 0.05; done
echo "the answer" > "$AITBC_RESULT_FILE"
head -c 300000 /dev/urandom | base64 > "$AITBC_ARTIFACTS_DIR/data.txt"
echo finished
"""
    job_id = stack.post_job(type="command", input=script)
    stack.wait_status(job_id, {"running"}, timeout=20)

    stack.stop_server(signal.SIGKILL)
    go.touch()
    job_dir = stack.work_dir("m1") / "jobs" / job_id
    finish = wait_until(lambda: (job_dir / "finish.json").exists() and job_dir / "finish.json", timeout=15)
    assert json.loads(finish.read_text())["verb"] == "complete"  # kept on disk while nobody answers
    artifact = (job_dir / "package" / "artifacts" / "data.txt").read_bytes()

    stack.start_server()
    done = stack.wait_status(job_id, {"completed", "failed"}, timeout=30)
    assert done["status"] == "completed", done
    assert done["attempt"] == 1
    record, files = stored_package(stack, job_id)
    assert files["result.txt"] == b"the answer\n"
    assert files["artifacts/data.txt"] == artifact
    sizes = {entry["path"]: (entry["size"], entry["sha256"]) for entry in record["manifest"]["files"]}
    assert sizes["artifacts/data.txt"] == (len(artifact), hashlib.sha256(artifact).hexdigest())
    wait_until(lambda: not job_dir.exists(), timeout=5, what="the delivered result to be cleared from disk")
