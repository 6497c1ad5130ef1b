"""What the CLI shows, with `aitbc serve` and `aitbc miner run` as real processes: amounts without exponents,
no ETA once a job has ended, a completed job's result (linked from the status object, its start shown by
`status`), a "no" at a prompt that is an answer and not an error, ids and statuses whole in an 80-column
terminal, and a canceled job's output.json that agrees with the API."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.stack import AITBC, Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    made = Stack(tmp_path)
    made.start_server()
    made.start_miner("display", "--allow-command", "--runtimes", "command", "--claim-wait", "2")
    try:
        yield made
    finally:
        made.close()


def answer_prompt(stack: Stack, answer: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The CLI on a terminal (a pseudo-terminal as its stdin), the user typing `answer` at its prompt."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [*AITBC, *arguments],
            env=stack.environment,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(controller, answer.encode() + b"\n")
        out, err = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_amounts_etas_and_a_no_at_the_prompt(stack: Stack) -> None:
    job_id = stack.submit("--type", "command", "--input", "sleep 600", "--gpu", "a100")  # no miner has an A100
    kept = answer_prompt(stack, "n", "client", "cancel", "--job-id", job_id)
    assert kept.returncode == 0 and f"not canceled: {job_id} goes on" in kept.stdout, kept.stderr
    assert stack.job(job_id)["status"] == "pending"
    gone = answer_prompt(stack, "y", "client", "cancel", "--job-id", job_id)
    assert gone.returncode == 0 and "canceled" in gone.stdout, gone.stderr

    status = stack.cli("client", "status", "--job-id", job_id).stdout
    assert "Cost" in status and "0 AITBC (0 s)" in status and "E-" not in status
    assert "ETA" not in status and "Ended" in status
    balance = stack.cli("client", "balance").stdout
    assert "held by unfinished jobs: 0 AITBC" in balance and "E-" not in balance


def test_a_completed_jobs_result_and_a_canceled_jobs_output_json(stack: Stack) -> None:
    done = stack.submit("--type", "command", "--input", 'echo "the answer is 42"')
    finished = stack.wait_status(done, {"completed", "failed"}, timeout=60)
    assert finished["status"] == "completed"
    links = finished["result_links"]
    assert links == {
        "result_file": f"/v1/jobs/{done}/files/result.txt",
        "package": f"/v1/jobs/{done}/results",
        "download": f"/v1/jobs/{done}/download",
    }
    fetched = httpx.get(stack.url + links["result_file"], headers={"X-Api-Key": stack.client_key})
    assert fetched.text == "the answer is 42\n"
    status = stack.cli("client", "status", "--job-id", done).stdout
    assert "Result" in status and "the answer is 42" in status and "ETA" not in status

    running = stack.submit("--type", "command", "--input", "echo started; sleep 600")
    assert stack.wait_status(running, {"running"}, timeout=60)["result_links"] is None
    stack.cli("client", "cancel", "--job-id", running, "--force")
    canceled = stack.wait_status(running, {"canceled"}, timeout=60)
    output = json.loads(stack.package(running).files["output.json"])
    assert (output["status"], output["failure_reason"]) == ("canceled", None)
    assert (canceled["failure_reason"], canceled["result_links"]) == (None, None)


def test_ids_and_statuses_stay_whole_at_80_columns(stack: Stack) -> None:
    job_id = stack.submit("--type", "command", "--input", 'echo "done"')
    stack.wait_status(job_id, {"completed"}, timeout=60)
    narrow = {"COLUMNS": "80"}
    listed = stack.cli("client", "list", env=narrow).stdout
    assert max(len(line) for line in listed.splitlines()) <= 80
    row = next(line for line in listed.splitlines() if job_id in line)
    assert "completed" in row and "…" not in listed
    status = stack.cli("client", "status", "--job-id", job_id, env=narrow).stdout
    assert job_id in status and "completed" in status and "…" not in status
