"""A miner that misses its heartbeats is lost long before its leases end (issue 11 §2), with real processes:
`aitbc serve --miner-lost-after 3` with 24 s leases, and `aitbc miner run`. A miner frozen with SIGSTOP keeps
its sockets open but stops heartbeating: its jobs go back to the queue within seconds, another miner completes
them, and when it thaws its late result is refused and it stops what it still runs. A coordinator that was down
does not count its own outage against the miners that reconnect."""

from __future__ import annotations

import json
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aitbc.miner.sandbox import HostUser, ScratchFolders
from tests.support.processes import job_folder, processes_named, unique_marker
from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
LOST_AFTER = 3
LONG_LEASE = 24  # twice what the test waits for a job to come back: only the lost window can do it that soon


def job_folders(work_dir: Path) -> list[Path]:
    """The scratch folders of the jobs a miner runs now (seen from the host, as root)."""
    base = ScratchFolders.default_base(work_dir, HostUser.for_jobs())
    return [path for path in base.iterdir() if (path / "work").is_dir()] if base.is_dir() else []


def ledger_of(stack: Stack, job_id: str) -> dict[str, list[Decimal]]:
    entries = json.loads(stack.cli("billing", "list", "--json").stdout)
    kinds: dict[str, list[Decimal]] = {}
    for entry in entries:
        if entry["job_id"] == job_id:
            kinds.setdefault(entry["kind"], []).append(Decimal(entry["amount"]))
    return kinds


def assert_charged_once(stack: Stack, job: dict[str, Any]) -> None:
    kinds = ledger_of(stack, job["job_id"])
    assert sorted(kinds) == ["hold", "release"] and len(kinds["hold"]) == len(kinds["release"]) == 1, kinds
    assert -(kinds["hold"][0] + kinds["release"][0]) == Decimal(job["cost"]), (kinds, job["cost"])


def test_a_frozen_miner_is_lost_within_seconds_and_its_late_work_is_refused(tmp_path: Path) -> None:
    stack = Stack(tmp_path, lease_seconds=LONG_LEASE)
    try:
        stack.start_server("--miner-lost-after", str(LOST_AFTER))
        started = time.monotonic()  # the reaper started before the server answered
        first = stack.start_miner("first", "--allow-command", "--max-jobs", "2", "--claim-wait", "2")
        finishes_late, runs_on = unique_marker(), unique_marker()
        late = stack.post_job(
            type="command",
            input=f"""
echo "attempt $AITBC_ATTEMPT" > "$AITBC_RESULT_FILE"
if [ "$AITBC_ATTEMPT" = 1 ]; then (exec -a {finishes_late} sh -c 'while [ ! -f go ]; do sleep 0.05; done'); fi
""",
        )
        endless = stack.post_job(
            type="command",
            input=f"""
echo "attempt $AITBC_ATTEMPT" > "$AITBC_RESULT_FILE"
if [ "$AITBC_ATTEMPT" = 1 ]; then (exec -a {runs_on} sleep 600); fi
""",
        )
        for job_id in (late, endless):
            running = stack.wait_status(job_id, {"running"}, timeout=30)
            assert running["attempt"] == 1
        first_id = stack.job(late)["miner_id"]
        assert stack.job(endless)["miner_id"] == first_id
        wait_until(lambda: processes_named(finishes_late) and processes_named(runs_on), 20, what="both jobs to run")

        # No miner is lost for a lease period after the coordinator's start (see the restart test below).
        wait_until(lambda: time.monotonic() - started > LONG_LEASE + 1, 60, what="the start's grace to end")

        first.send_signal(signal.SIGSTOP)  # no more heartbeats; its connections and its jobs' processes live on
        for job_id in (late, endless):  # the leases, extended a moment ago, have 24 s to run
            requeued = stack.wait_status(job_id, {"pending"}, timeout=LONG_LEASE / 2)
            assert requeued["attempt"] == 1 and requeued["miner_id"] is None
            assert requeued["error"] == f"miner {first_id} was lost (missed its heartbeats for {LOST_AFTER} s)"
        assert first.poll() is None  # frozen, not dead

        # The first attempt of `late` ends while its miner is frozen: it has a result to deliver when it thaws.
        for folder in job_folders(stack.work_dir("first")):
            (folder / "work" / "go").touch()
        wait_until(lambda: not processes_named(finishes_late), 20, what="the first attempt of the late job to end")

        stack.start_miner("second", "--allow-command", "--max-jobs", "2", "--claim-wait", "2")
        done = {job_id: stack.wait_status(job_id, {"completed", "failed"}, timeout=60) for job_id in (late, endless)}
        for job_id, job in done.items():
            assert job["status"] == "completed", job
            assert job["attempt"] == 2 and job["miner_id"] not in (None, first_id)
            assert stack.package(job_id).files["result.txt"] == b"attempt 2\n"

        first.send_signal(signal.SIGCONT)
        wait_until(lambda: not processes_named(runs_on), 30, what="the thawed miner to stop its copy of the job")
        wait_until(
            lambda: (
                f"result of {late} refused" in (log := stack.miner_log("first"))
                or f"job {late}: lease lost; its work is dropped" in log
            ),
            30,
            what="the thawed miner to have its late result refused",
        )
        assert first.poll() is None  # it lives on, a miner like any other
        for job_id, job in done.items():
            again = stack.job(job_id)
            assert (again["status"], again["attempt"], again["miner_id"]) == ("completed", 2, job["miner_id"])
            assert stack.package(job_id).files["result.txt"] == b"attempt 2\n"
            assert_charged_once(stack, again)
    finally:
        stack.close()


def test_a_restarted_coordinator_keeps_the_jobs_of_miners_that_reconnect(tmp_path: Path) -> None:
    """Down for longer than the lost window, the coordinator comes back and finds every `last_seen_at` old:
    the miner that reconnects keeps its running job, which completes on its first attempt."""
    lease = 10
    stack = Stack(tmp_path, lease_seconds=lease)
    try:
        stack.start_server("--miner-lost-after", str(LOST_AFTER))
        stack.start_miner("m1", "--allow-command", "--claim-wait", "2")
        job_id = stack.post_job(
            type="command",
            input="""
while [ ! -f go ]; do sleep 0.05; done
echo "attempt $AITBC_ATTEMPT" > "$AITBC_RESULT_FILE"
""",
        )
        stack.wait_status(job_id, {"running"}, timeout=30)
        go = job_folder(stack.work_dir("m1")) / "work" / "go"

        stack.stop_server(signal.SIGKILL)
        stopped = time.monotonic()
        wait_until(lambda: time.monotonic() - stopped > 2 * LOST_AFTER, 30, what="an outage past the lost window")
        stack.start_server("--miner-lost-after", str(LOST_AFTER))
        restarted = time.monotonic()
        # Past the start's grace (a lease) and a lost window more: the miner has been heartbeating all along.
        wait_until(lambda: time.monotonic() - restarted > lease + 2 * LOST_AFTER, 60, what="the grace to end")
        still = stack.job(job_id)
        assert (still["status"], still["attempt"]) == ("running", 1), still
        go.touch()
        done = stack.wait_status(job_id, {"completed", "failed"}, timeout=30)
        assert (done["status"], done["attempt"]) == ("completed", 1), done
        assert stack.package(job_id).files["result.txt"] == b"attempt 1\n"
        assert_charged_once(stack, done)
    finally:
        stack.close()
