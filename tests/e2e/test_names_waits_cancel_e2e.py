"""End to end, as a user would: `aitbc serve` and `aitbc miner run` as processes, and the CLI to submit named
and tagged jobs and wait for their results (`submit --wait`), list and export them by tag, and cancel them by
filter (`cancel --tag … --yes`): running jobs stopped on the miner, another tag's job untouched."""

from __future__ import annotations

import csv
import json

import pytest

from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_submit_wait_prints_the_result_and_exits_as_the_job_ended(stack: Stack) -> None:
    stack.start_miner("m1", "--allow-command", "--runtimes", "command")
    done = stack.cli(
        "client", "submit", "--type", "command", "--input", "echo hello", "--name", "greeting", "--tag", "e2e",
        "--tag", "team:ml", "--wait",
    )  # fmt: skip
    assert done.stdout == "hello\n"
    as_json = stack.json("client", "submit", "--type", "command", "--input", "echo again", "--wait")
    assert (as_json["status"], as_json["result"]) == ("completed", "again\n")
    failed = stack.cli("client", "submit", "--type", "command", "--input", "exit 3", "--wait", check=False)
    assert failed.returncode == 1 and "failed" in failed.stdout and "runtime_error" in failed.stdout

    (named,) = stack.json("client", "list", "--tag", "e2e")["jobs"]
    assert (named["name"], named["tags"], named["status"]) == ("greeting", ["e2e", "team:ml"], "completed")
    table = stack.cli("client", "list", "--name", "greeting").stdout
    assert "greeting" in table and "e2e team:ml" in table
    shown = stack.cli("client", "status", "--job-id", named["job_id"]).stdout
    assert "greeting" in shown and "e2e team:ml" in shown
    refused = stack.cli("client", "submit", "--type", "command", "--tag", "not ok", check=False)
    assert refused.returncode == 1 and "tags" in refused.stderr


def test_cancel_by_tag_asks_then_stops_running_jobs_and_leaves_the_rest(stack: Stack) -> None:
    stack.start_miner("m1", "--allow-command", "--runtimes", "command", "--max-jobs", "2")
    sweep = [stack.submit("--type", "command", "--input", "sleep 600", "--tag", "sweep") for _ in range(3)]
    kept = stack.submit("--type", "command", "--input", "sleep 600", "--tag", "keep", "--name", "keep me")
    wait_until(
        lambda: sum(stack.job(job_id)["status"] == "running" for job_id in [*sweep, kept]) == 2,
        30,
        what="two jobs running on the miner",
    )

    nothing = stack.cli("client", "cancel", check=False)
    assert nothing.returncode == 2 and "--all" in nothing.stderr
    unasked = stack.cli("client", "cancel", "--tag", "sweep", check=False)  # no terminal to ask on
    assert unasked.returncode == 2 and "--force" in unasked.stderr
    assert {stack.job(job_id)["status"] for job_id in sweep} <= {"pending", "running"}

    exported = stack.root / "sweep.csv"
    stack.cli("client", "export", "--format", "csv", "--output", str(exported), "--tag", "sweep")
    rows = list(csv.DictReader(exported.open()))
    assert sorted(row["job_id"] for row in rows) == sorted(sweep) and {row["tags"] for row in rows} == {"sweep"}

    result = json.loads(stack.cli("client", "cancel", "--tag", "sweep", "--yes", "--json").stdout)
    assert result["canceled"] + result["canceling"] == 3 and result["failed"] == 0
    assert sorted(job["job_id"] for job in result["jobs"]) == sorted(sweep)
    for job_id in sweep:
        assert stack.wait_status(job_id, {"canceled"}, timeout=30)["status"] == "canceled"
    assert stack.job(kept)["status"] in ("pending", "running")
    again = stack.cli("client", "cancel", "--tag", "sweep", "--yes").stdout
    assert "nothing to cancel" in again
    stack.cli("client", "cancel", "--name", "keep me", "--yes")
    assert stack.wait_status(kept, {"canceled"}, timeout=30)["status"] == "canceled"
    balance = stack.json("client", "balance")
    assert float(balance["held"]) == 0
