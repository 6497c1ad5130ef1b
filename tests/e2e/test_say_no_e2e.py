"""Saying no before a job waits, as a user meets it: `submit` of a job no connected miner can run is refused
with what is on offer and submits nothing; with `--queue-timeout` it is accepted with a warning, and `watch`
shows what it waits for, live, as miners come — against a real coordinator, real miners and the real CLI."""

from __future__ import annotations

import os
import pty
import subprocess
import threading

import httpx
import pytest

from tests.support.stack import AITBC, Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def offered_runtimes(stack: Stack) -> set[str]:
    """The runtimes the connected miners offer (the marketplace's public view)."""
    answer = httpx.get(f"{stack.url}/v1/marketplace/gpus", headers={"X-Api-Key": stack.client_key}, timeout=10)
    return {runtime for offer in answer.json()["offers"] for runtime in offer["runtimes"]}


def test_refused_then_accepted_with_a_queue_timeout_and_watched_until_a_miner_runs_it(stack: Stack) -> None:
    stack.start_miner("plain", "--allow-command", "--runtimes", "command", "--claim-wait", "2")
    wait_until(lambda: "command" in offered_runtimes(stack), timeout=30, what="the first miner")

    refused = stack.cli(
        "client", "submit", "--type", "command", "--input", "echo hi", "--gpu-type", "a100", check=False
    )
    assert refused.returncode == 1, refused
    assert "needs 1x a100" in refused.stderr and "no GPU" in refused.stderr and "--queue-timeout" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert stack.json("client", "list")["jobs"] == []

    accepted = stack.cli(
        "client", "submit", "--type", "command", "--input", "echo hi", "--gpu-type", "a100", "--queue-timeout", "10m"
    )
    job_id = accepted.stdout.strip()
    assert job_id.startswith("job_"), accepted
    assert "warning: no connected miner can run it (needs 1x a100): it waits at most 600 s" in accepted.stderr

    watching = stack.cli_running("client", "watch", "--job-id", job_id)
    try:
        # On a terminal-less stdout the bar is drawn once at the end; what it waited for is in the status object.
        assert stack.job(job_id)["waiting_for"] == "no connected miner can run it (needs 1x a100)"
        # A GPU miner (a declared GPU on a CPU machine: the job is a command) connects and takes it.
        stack.start_miner("gpu", "--allow-command", "--runtimes", "command", "--gpus", "A100:80", "--claim-wait", "2")
        stack.wait_status(job_id, {"completed"}, timeout=60)
        watching.process.wait(timeout=30)
    finally:
        watching.kill()
    assert watching.process.returncode == 0, watching.stderr
    assert "completed" in watching.stdout + watching.stderr


def test_with_no_miner_connected_submit_warns_and_the_job_waits(stack: Stack) -> None:
    accepted = stack.cli("client", "submit", "--type", "command", "--input", "echo hi")
    assert "warning: no miner is connected now: it waits until one connects" in accepted.stderr
    job = stack.job(accepted.stdout.strip())
    assert job["status"] == "pending" and job["waiting_for"] == "no miner is connected"
    as_json = stack.json("client", "submit", "--type", "command", "--input", "echo hi", "--queue-timeout", "90")
    assert as_json["warnings"] == [
        "no miner is connected now: it waits at most 90 s for one, then expires at no charge"
    ]


def test_a_malformed_queue_timeout_is_refused_by_the_cli(stack: Stack) -> None:
    for bad in ("soon", "0", "-5m", "10w"):
        answer = stack.cli(
            "client", "submit", "--type", "command", "--input", "hi", "--queue-timeout", bad, check=False
        )
        assert answer.returncode != 0 and "invalid duration" in answer.stderr and "Traceback" not in answer.stderr
    assert stack.json("client", "list")["jobs"] == []


def test_watch_on_a_terminal_shows_what_the_job_waits_for_as_miners_come(stack: Stack) -> None:
    job_id = stack.submit("--type", "command", "--input", "echo hi", "--gpu-type", "a100", "--queue-timeout", "10m")
    controller, terminal = pty.openpty()
    screen: list[bytes] = []
    process = subprocess.Popen(
        [*AITBC, "client", "watch", "--job-id", job_id],
        env={**stack.environment, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    reader = threading.Thread(target=_read_all, args=(controller, screen), daemon=True)
    reader.start()
    try:
        wait_until(lambda: b"no miner is connected" in b"".join(screen), timeout=30, what="the first reason")
        stack.start_miner("plain", "--allow-command", "--runtimes", "command", "--claim-wait", "2")
        # No job event says so: `watch` reads the status again while the stream is quiet.
        wait_until(lambda: b"needs 1x a100" in b"".join(screen), timeout=30, what="the reason of the CPU miner")
        stack.start_miner("gpu", "--allow-command", "--runtimes", "command", "--gpus", "A100:80", "--claim-wait", "2")
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=10)
    shown = b"".join(screen).decode(errors="replace")
    assert "completed" in shown and "Traceback" not in shown


def _read_all(descriptor: int, into: list[bytes]) -> None:
    """What the command writes to its terminal, until it closes (EIO once the last writer is gone)."""
    try:
        while chunk := os.read(descriptor, 65536):
            into.append(chunk)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def test_an_input_the_runtime_cannot_take_is_refused_before_it_is_billed(stack: Stack) -> None:
    stack.start_miner("plain", "--allow-command", "--runtimes", "command", "--claim-wait", "2")
    wait_until(lambda: "command" in offered_runtimes(stack), timeout=30, what="the miner")
    balance = stack.cli("client", "balance").stdout
    # A JSON list to the command runtime, which takes a script (text, or {script, files}): its schema says no.
    refused = stack.cli("client", "submit", "--type", "command", "--input", "[1, 2]", check=False)
    assert refused.returncode == 1, refused
    assert "input for 'command'" in refused.stderr and "Traceback" not in refused.stderr
    assert stack.json("client", "list")["jobs"] == []
    assert stack.cli("client", "balance").stdout == balance  # nothing held, nothing charged
    taken = stack.submit("--type", "command", "--input", "echo fine")
    assert stack.wait_status(taken, {"completed", "failed"}, timeout=60)["status"] == "completed"
