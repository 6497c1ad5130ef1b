"""End to end, as a user would: `aitbc serve` and `aitbc miner run` as processes, the CLI to submit, follow
and cancel, and the coordinator's stored result package checked byte for byte."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess

import httpx
import pytest

from aitbc.domain.manifest import verify
from tests.support.processes import job_folder, process_gone, processes_named, unique_marker
from tests.support.stack import AITBC, Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def public_key(stack: Stack, miner: str) -> str:
    return (stack.work_dir(miner) / "state" / "miner_ed25519.pub").read_text().strip()


def test_progress_shows_while_running_and_the_full_package_arrives(stack: Stack) -> None:
    stack.start_miner("m1", "--allow-command", "--runtimes", "command")
    script = """
echo "loading"
echo AITBC_PROGRESS=40 warming up
while [ ! -f go ]; do sleep 0.05; done
echo "a warning" >&2
echo AITBC_PROGRESS=90
echo "main output" > "$AITBC_RESULT_FILE"
mkdir -p "$AITBC_ARTIFACTS_DIR/plots"
printf 'x,y\\n1,2\\n' > "$AITBC_ARTIFACTS_DIR/plots/points.csv"
echo "done"
"""
    job_id = stack.submit("--type", "command", "--input", script)
    running = wait_until(
        lambda: (job := stack.job(job_id))["progress"] == 40 and job, timeout=20, what="progress 40 while running"
    )
    assert running["status"] == "running"
    assert running["progress_message"] == "warming up"
    assert running["estimated_completion"] is not None
    shown = stack.cli("client", "status", "--job-id", job_id).stdout
    assert "running" in shown and "40%" in shown and "warming up" in shown
    as_json = json.loads(stack.cli("client", "status", "--job-id", job_id, "--json").stdout)
    assert (as_json["status"], as_json["progress"]) == ("running", 40)

    (job_folder(stack.work_dir("m1")) / "work" / "go").touch()  # the job's folder, seen from the host
    done = stack.wait_status(job_id, {"completed", "failed"}, timeout=20)
    assert done["status"] == "completed", done
    assert done["exit_code"] == 0
    assert done["progress"] == 100

    package = stack.package(job_id)
    files = package.files
    assert set(files) == {
        "output.json",
        "result.txt",
        "logs/stdout.log",
        "logs/stderr.log",
        "artifacts/plots/points.csv",
    }
    assert files["result.txt"] == b"main output\n"
    assert files["artifacts/plots/points.csv"] == b"x,y\n1,2\n"
    assert files["logs/stdout.log"].decode().splitlines() == [
        "loading",
        "AITBC_PROGRESS=40 warming up",
        "AITBC_PROGRESS=90",
        "done",
    ]
    assert files["logs/stderr.log"] == b"a warning\n"
    output = json.loads(files["output.json"])
    assert output["job_id"] == job_id
    assert output["status"] == "completed"
    assert output["exit_code"] == 0
    assert output["miner_id"] == done["miner_id"]
    assert not package.partial
    manifest = package.manifest
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        path: hashlib.sha256(data).hexdigest() for path, data in files.items()
    }
    assert verify(public_key(stack, "m1"), manifest, package.miner_signature)


def test_result_txt_is_stdout_without_progress_lines_when_no_result_file(stack: Stack) -> None:
    stack.start_miner("m1", "--allow-command")
    job_id = stack.post_job(type="command", input="echo one; echo AITBC_PROGRESS=50; echo two")
    assert stack.wait_status(job_id, {"completed", "failed"}, timeout=20)["status"] == "completed"
    files = stack.package(job_id).files
    assert files["result.txt"] == b"one\ntwo\n"


def test_a_script_that_exits_nonzero_fails_with_runtime_error_and_its_stderr(stack: Stack) -> None:
    stack.start_miner("m1", "--allow-command")
    job_id = stack.submit("--type", "command", "--input", "echo working; echo 'disk on fire' >&2; exit 3")
    failed = stack.wait_status(job_id, {"completed", "failed"}, timeout=20)
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == "runtime_error"
    assert failed["exit_code"] == 3
    assert "exited with code 3" in failed["error"]
    shown = stack.cli("client", "status", "--job-id", job_id).stdout
    assert "failed" in shown and "runtime_error" in shown
    package = stack.package(job_id)
    files = package.files
    assert files["logs/stderr.log"] == b"disk on fire\n"
    assert files["logs/stdout.log"] == b"working\n"
    assert json.loads(files["output.json"])["failure_reason"] == "runtime_error"
    assert package.partial


def test_cancel_kills_a_running_sleep_before_it_is_confirmed_and_keeps_partial_logs(stack: Stack) -> None:
    marker = unique_marker()
    stack.start_miner("m1", "--allow-command")
    script = f"echo 'before the long sleep'\n(exec -a {marker} sleep 600) &\nwait\n"
    job_id = stack.post_job(type="command", input=script)
    stack.wait_status(job_id, {"running"}, timeout=20)
    pid = wait_until(lambda: processes_named(marker), timeout=10, what="the sleep")[0]
    assert not process_gone(pid)
    # The first batch of logs is out, so the partial package is not the only place they are.
    wait_until(lambda: "before the long sleep" in stack.log_lines(job_id), timeout=10, what="the first logs")

    answer = httpx.post(f"{stack.url}/v1/jobs/{job_id}/cancel", headers={"X-Api-Key": stack.client_key}, timeout=10)
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcome"] == "canceling"
    # How fast: bench/cancel_latency.py. Here, the order: the miner confirms only once the processes are gone.
    canceled = stack.wait_status(job_id, {"canceled"}, timeout=30)
    assert process_gone(pid)
    assert canceled["error"] is None  # confirmed by the miner; a forced cancel says the lease was revoked
    package = stack.package(job_id)
    files = package.files
    assert package.partial
    assert files["logs/stdout.log"] == b"before the long sleep\n"
    assert json.loads(files["output.json"])["status"] == "canceled"
    downloaded = httpx.get(
        f"{stack.url}/v1/jobs/{job_id}/files/logs/stdout.log", headers={"X-Api-Key": stack.client_key}, timeout=10
    )
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.content == b"before the long sleep\n"


def test_cancel_through_the_cli(stack: Stack) -> None:
    marker = unique_marker()
    stack.start_miner("m1", "--allow-command")
    job_id = stack.post_job(type="command", input=f"(exec -a {marker} sleep 600) &\nwait\n")
    stack.wait_status(job_id, {"running"}, timeout=20)
    pid = wait_until(lambda: processes_named(marker), timeout=10, what="the sleep")[0]
    shown = stack.cli("client", "cancel", "--job-id", job_id, "--force").stdout
    assert "canceling" in shown
    stack.wait_status(job_id, {"canceled"}, timeout=30)
    assert process_gone(pid)


def test_a_job_no_miner_can_run_stays_pending_and_says_why(stack: Stack) -> None:
    stack.start_miner("cpu-only", "--allow-command", "--gpus", "none")
    job_id = stack.submit("--type", "command", "--gpu", "a100", "--input", "nvidia-smi")
    # A job it can run, submitted after: once that one is done, the miner is connected and its claims have
    # passed over the a100 job, which was queued before.
    after = stack.post_job(type="command", input="true")
    stack.wait_status(after, {"completed"}, timeout=20)
    job = stack.job(job_id)
    assert job["status"] == "pending"
    assert "a100" in job["waiting_for"]
    shown = stack.cli("client", "status", "--job-id", job_id).stdout
    assert "pending" in shown and "Waiting for" in shown and "a100" in shown


def test_drain_mode_runs_what_is_queued_then_exits(stack: Stack) -> None:
    jobs = [stack.post_job(type="command", input=f"echo job {n}") for n in range(3)]
    miner = stack.start_miner("drainer", "--allow-command", "--drain", "--max-jobs", "2")
    assert miner.wait(timeout=30) == 0, stack.miner_log("drainer")
    for job_id in jobs:
        assert stack.job(job_id)["status"] == "completed"


def test_sigterm_hands_a_running_job_back_to_the_queue(stack: Stack) -> None:
    miner = stack.start_miner("m1", "--allow-command", "--shutdown-grace", "0.5")
    job_id = stack.post_job(type="command", input="sleep 600")
    stack.wait_status(job_id, {"running"}, timeout=20)
    miner.send_signal(signal.SIGTERM)
    assert miner.wait(timeout=15) == 0, stack.miner_log("m1")
    job = stack.wait_status(job_id, {"pending"}, timeout=5)
    assert job["attempt"] == 1
    assert "shut down" in (job["error"] or "")
    assert not list((stack.work_dir("m1") / "jobs").iterdir())


def test_a_miner_with_a_client_key_is_refused_and_exits(stack: Stack) -> None:
    answer = subprocess.run(
        [*AITBC, "miner", "run", "--allow-command", "--api-key", stack.client_key, "--work-dir", str(stack.root / "w")],
        env=stack.environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 1
    assert "miner" in answer.stderr and "client key" in answer.stderr
