"""Billing end to end, with `aitbc serve` and `aitbc miner run` as real processes: a job is charged for the
seconds it ran at its GPU's rate and priority; a canceled job for the seconds until the stop; a job whose
miner was killed pays nothing; a job whose completion reached the coordinator only after an outage pays for
the time it ran, not for the outage."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e
A100_HIGH_PER_SECOND = Decimal("0.10") * Decimal("1.5") / 3600


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def charge(seconds: int) -> Decimal:
    return (A100_HIGH_PER_SECOND * seconds).quantize(Decimal("0.000000001"))


def test_charges_follow_the_seconds_used(short_lease_stack: Stack) -> None:
    stack = short_lease_stack
    miner = stack.start_miner(
        "a100-box", "--gpus", "a100:80x1", "--allow-command", "--runtimes", "command", "--claim-wait", "2"
    )
    before = Decimal(json.loads(stack.cli("client", "balance", "--json").stdout)["available"])

    ran = stack.submit(
        "--type", "command", "--input", "sleep 2", "--gpu", "a100", "--priority", "high", "--timeout", "60"
    )
    done = stack.wait_status(ran, {"completed"}, timeout=60)
    assert done["billed_seconds"] in (2, 3)  # every started second counts
    assert Decimal(done["cost"]) == charge(done["billed_seconds"])

    canceled = stack.submit(
        "--type", "command", "--input", "sleep 60", "--gpu", "a100", "--priority", "high", "--timeout", "120"
    )
    running = stack.wait_status(canceled, {"running"}, timeout=30)
    assert running["started_at"]
    time.sleep(1.0)  # about a second of work, then the cancel (over HTTP: no CLI start-up in the measurement)
    answer = httpx.post(f"{stack.url}/v1/jobs/{canceled}/cancel", headers={"X-Api-Key": stack.client_key})
    assert answer.json()["outcome"] == "canceling"
    stopped = stack.wait_status(canceled, {"canceled"}, timeout=30)
    ran_for = (parse(stopped["completed_at"]) - parse(stopped["started_at"])).total_seconds()
    # Billed from the miner's start to its stop, within what the coordinator saw.
    assert 1 <= stopped["billed_seconds"] <= min(3, math.ceil(ran_for - 1e-6))
    assert Decimal(stopped["cost"]) == charge(stopped["billed_seconds"])

    lost = stack.submit(
        "--type", "command", "--input", "sleep 60", "--gpu", "a100", "--priority", "high", "--timeout", "120"
    )
    stack.wait_status(lost, {"running"}, timeout=30)
    os.kill(miner.pid, signal.SIGKILL)
    miner.wait(timeout=10)
    requeued = stack.wait_status(lost, {"pending"}, timeout=30)
    assert requeued["attempt"] == 1
    stack.cli("client", "cancel", "--job-id", lost, "--force")
    abandoned = stack.wait_status(lost, {"canceled"}, timeout=10)
    assert Decimal(abandoned["cost"]) == 0 and abandoned["billed_seconds"] == 0

    after = json.loads(stack.cli("client", "balance", "--json").stdout)
    spent = Decimal(done["cost"]) + Decimal(stopped["cost"])
    assert Decimal(after["available"]) == before - spent and Decimal(after["held"]) == 0
    ledger = json.loads(stack.cli("billing", "list", "--json").stdout)
    assert sum(Decimal(e["amount"]) for e in ledger) == Decimal(after["available"])
    stats = json.loads(stack.cli("client", "stats", "--json").stdout)
    assert Decimal(stats["total_spent"]) == spent
    exported = stack.root / "jobs.json"
    stack.cli("client", "export", "--format", "json", "--output", str(exported))
    jobs = json.loads(exported.read_text())
    assert stats["total_jobs"] == len(jobs) == 3
    assert sum(Decimal(j["cost"] or 0) for j in jobs) == spent


def test_a_coordinator_outage_after_the_job_ended_is_not_billed(tmp_path: Path) -> None:
    stack = Stack(tmp_path, lease_seconds=60)  # leases outlast the outage: the job is not handed back
    try:
        stack.start_server()
        stack.start_miner(
            "a100-box", "--gpus", "a100:80x1", "--allow-command", "--runtimes", "command", "--claim-wait", "2"
        )
        job_id = stack.submit(
            "--type", "command", "--input", "sleep 2", "--gpu", "a100", "--priority", "high", "--timeout", "60"
        )
        stack.wait_status(job_id, {"running"}, timeout=30)
        stack.stop_server(signal.SIGKILL)

        # The work ends while the coordinator is down; the miner keeps its result and retries delivering it.
        wait_until(lambda: list(stack.work_dir("a100-box").rglob("finish.json")), timeout=30, what="the job to end")
        retrying = f"/jobs/{job_id}/"
        wait_until(
            lambda: (
                sum(retrying in line and "retrying" in line for line in stack.miner_log("a100-box").splitlines()) >= 2
            ),
            timeout=60,
            what="the miner to retry its delivery twice",
        )
        (finished,) = stack.work_dir("a100-box").rglob("finish.json")
        wait_until(  # an outage that outlasts the work by 3 s: billing the observed time would show it
            lambda: time.time() - finished.stat().st_mtime >= 3, timeout=30, what="3 s of outage after the job ended"
        )
        stack.start_server()
        done = stack.wait_status(job_id, {"completed", "failed"}, timeout=120)
        assert done["status"] == "completed", done

        receipt = httpx.get(
            f"{stack.url}/v1/jobs/{job_id}/receipt", headers={"X-Api-Key": stack.client_key}, timeout=10
        ).json()["receipt"]
        times = receipt["charge"]["times"]
        observed, reported, billed = times["observed_by_coordinator"], times["reported_by_miner"], times["billed"]
        assert billed == reported  # the miner's run lies within what the coordinator saw
        assert parse(observed["started_at"]) <= parse(reported["started_at"])
        assert parse(reported["ended_at"]) < parse(observed["ended_at"])
        ran = (parse(reported["ended_at"]) - parse(reported["started_at"])).total_seconds()
        outage_included = (parse(observed["ended_at"]) - parse(observed["started_at"])).total_seconds()
        assert ran >= 2 and math.ceil(ran - 0.01) <= done["billed_seconds"] <= math.ceil(ran + 0.01)
        assert outage_included > done["billed_seconds"] + 1  # what the charge would have been before
        assert Decimal(done["cost"]) == charge(done["billed_seconds"])
    finally:
        stack.close()
