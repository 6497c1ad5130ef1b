"""Miners and coordinators die: a killed miner's job finishes elsewhere, a coordinator restart loses nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess

import pytest

from aitbc.miner.cgroups import MinerCgroups
from aitbc.miner.sandbox import HostUser, ScratchFolders, miner_tag
from tests.support.processes import job_folder, processes_named, unique_marker
from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_a_killed_miners_job_goes_back_to_the_queue_and_another_miner_completes_it(
    short_lease_stack: Stack,
) -> None:
    stack = short_lease_stack
    marker = unique_marker()
    first = stack.start_miner("first", "--allow-command")
    script = f"""
echo "attempt $AITBC_ATTEMPT" > "$AITBC_RESULT_FILE"
if [ "$AITBC_ATTEMPT" = 1 ]; then (exec -a {marker} sleep 60); fi
echo finished
"""
    job_id = stack.post_job(type="command", input=script)
    running = stack.wait_status(job_id, {"running"}, timeout=20)
    first_miner = running["miner_id"]
    wait_until(lambda: processes_named(marker), timeout=10, what="the first attempt to start")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # The sandbox dies with the miner that started it: nothing of the first attempt runs on.
    wait_until(lambda: not processes_named(marker), timeout=10, what="the first attempt's processes to die")
    requeued = stack.wait_status(job_id, {"pending"}, timeout=stack.lease_seconds + 5)
    assert requeued["attempt"] == 1
    assert "lost" in requeued["error"]

    stack.start_miner("second", "--allow-command")
    done = stack.wait_status(job_id, {"completed", "failed"}, timeout=20)
    assert done["status"] == "completed", done
    assert done["attempt"] == 2
    assert done["miner_id"] != first_miner
    package = stack.package(job_id)
    files = package.files
    assert files["result.txt"] == b"attempt 2\n"
    assert package.miner_id == done["miner_id"]

    # What the killed miner left: its job's folder (a tmpfs, as root) and cgroups. Put a process into those
    # cgroups, as one that escaped the sandbox's end would be, for the next start to find.
    work_dir = stack.work_dir("first")
    base = ScratchFolders.default_base(work_dir, HostUser.for_jobs())
    left = [path for path in base.iterdir()]
    assert len(left) == 1
    cgroups = MinerCgroups.for_miner(miner_tag(work_dir))
    straggler = None
    if cgroups is not None:
        assert os.path.ismount(left[0])
        [leftover] = cgroups.leftovers()
        straggler = subprocess.Popen(["sleep", "300"])
        leftover.procs_files[0].write_text(str(straggler.pid))

    # The first miner comes back: it reports the job it lost as handed back, and the coordinator refuses it.
    again = stack.start_miner("first", "--allow-command", "--drain")
    assert again.wait(timeout=30) == 0, stack.miner_log("first")
    assert not left[0].exists() and not os.path.ismount(left[0])
    if cgroups is not None:
        assert straggler is not None and straggler.wait(timeout=10) == -signal.SIGKILL
        assert cgroups.leftovers() == []
    assert "refused" in stack.miner_log("first")
    assert stack.job(job_id)["status"] == "completed"
    assert stack.package(job_id).files["result.txt"] == b"attempt 2\n"


def test_a_coordinator_restart_in_the_middle_of_a_job_loses_nothing(stack: Stack) -> None:
    stack.start_miner("m1", "--allow-command")
    script = """
echo AITBC_PROGRESS=20
while [ ! -f go ]; do sleep 0.05; done
echo "the answer" > "$AITBC_RESULT_FILE"
head -c 300000 /dev/urandom | base64 > "$AITBC_ARTIFACTS_DIR/data.txt"
echo finished
"""
    job_id = stack.post_job(type="command", input=script)
    stack.wait_status(job_id, {"running"}, timeout=20)

    go = job_folder(stack.work_dir("m1")) / "work" / "go"
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
    package = stack.package(job_id)
    files = package.files
    assert files["result.txt"] == b"the answer\n"
    assert files["artifacts/data.txt"] == artifact
    sizes = {entry["path"]: (entry["size"], entry["sha256"]) for entry in package.manifest["files"]}
    assert sizes["artifacts/data.txt"] == (len(artifact), hashlib.sha256(artifact).hexdigest())
    wait_until(lambda: not job_dir.exists(), timeout=5, what="the delivered result to be cleared from disk")
