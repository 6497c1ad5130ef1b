"""A failed job says what went wrong, with `aitbc serve` and `aitbc miner run` as real processes: `aitbc client
status` shows its exit code and the last 10 lines of its stderr, the status object's `error` carries them, and
the package's output.json agrees with the API on the failure."""

from __future__ import annotations

import json

import pytest

from aitbc.domain.job import split_stderr_tail
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
FAILING = 'echo "working"; for i in $(seq 1 15); do echo "problem $i" >&2; done; exit 3'


def test_a_failed_jobs_status_shows_the_end_of_its_stderr(stack: Stack) -> None:
    job_id = stack.submit("--type", "command", "--input", FAILING)
    miner = stack.start_miner("drain", "--allow-command", "--runtimes", "command", "--drain")
    assert miner.wait(timeout=120) == 0, stack.miner_log("drain")

    status = stack.json("client", "status", "--job-id", job_id)
    assert (status["status"], status["failure_reason"], status["exit_code"]) == ("failed", "runtime_error", 3)
    message, tail = split_stderr_tail(status["error"])
    assert message == "the script exited with code 3"
    assert tail == [f"problem {i}" for i in range(6, 16)]

    human = stack.cli("client", "status", "--job-id", job_id).stdout
    assert "runtime_error (exit code 3) the script exited with code 3" in human
    assert "problem 15" in human and "problem 6" in human and "problem 5" not in human

    output = json.loads(stack.package(job_id).files["output.json"])
    assert (output["status"], output["failure_reason"], output["exit_code"]) == ("failed", "runtime_error", 3)
    assert output["message"] == status["error"]
