"""The live log, with `aitbc serve` and `aitbc miner run` as real processes: `aitbc client logs --follow` and the
WebSocket's log events give every line with the time the job printed it and its stream, stdout and stderr
interleaved in the order the job printed them; the package keeps logs/stdout.log and logs/stderr.log apart."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from aitbc.sdk.client import Client
from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e
# Each line a moment after the one before, so the order across the two pipes is the order of printing.
SCRIPT = (
    "echo 'out 1'; sleep 0.3; echo 'err 1' >&2; sleep 0.3; echo 'out 2'; sleep 0.3; echo 'err 2' >&2; "
    "sleep 0.3; echo 'AITBC_PROGRESS=50 halfway'; echo 'out 3'"
)
ORDER = [("stdout", "out 1"), ("stderr", "err 1"), ("stdout", "out 2"), ("stderr", "err 2"), ("stdout", "out 3")]


def subscriptions(stack: Stack) -> int:
    with stack.admin() as http:
        count: int = http.get("/v1/admin/runtime").json()["subscriptions"]
    return count


def test_live_lines_carry_their_time_and_stream_in_the_order_printed(stack: Stack) -> None:
    job_id = stack.submit("--type", "command", "--input", SCRIPT)
    before = subscriptions(stack)  # the coordinator's own (its receipt signer follows the hub)
    human = stack.cli_running("client", "logs", "--job-id", job_id, "--follow")
    as_json = stack.cli_running("client", "logs", "--job-id", job_id, "--follow", "--json")
    with Client(stack.url, stack.client_key) as client:
        events = client.events(job_id=job_id, since=0)
        assert next(events).status.value == "pending"  # the job's backlog: it is being followed
        following = before + 3  # this client's stream and both `logs --follow`
        wait_until(lambda: subscriptions(stack) == following, 60, what="both `logs --follow` to follow the job")
        stack.start_miner("logs", "--allow-command", "--runtimes", "command", "--drain")
        streamed = []
        for event in events:
            streamed += event.data.get("lines", []) if event.kind == "log" else []
            if event.status.is_terminal:
                break
    assert human.wait() == 0 and as_json.wait() == 0, human.stderr + as_json.stderr

    assert [(line["stream"], line["line"]) for line in streamed] == ORDER
    printed = [datetime.fromisoformat(line["at"]) for line in streamed]
    assert printed == sorted(printed)

    lines = [json.loads(line) for line in as_json.stdout_lines]
    assert [(line["stream"], line["line"]) for line in lines] == ORDER
    assert [datetime.fromisoformat(line["at"]) for line in lines] == [
        datetime.fromisoformat(line["at"].replace("Z", "+00:00")) for line in lines
    ]
    assert all(line["at"].endswith("Z") for line in lines)

    shown = human.stdout_lines
    assert len(shown) == len(ORDER) and "AITBC_PROGRESS" not in human.stdout
    for text, (stream, line), json_line in zip(shown, ORDER, lines, strict=True):
        date, time, shown_stream, *words = text.split()
        assert f"{date}T{time}" == json_line["at"] and (shown_stream, " ".join(words)) == (stream, line)

    package = stack.package(job_id).files
    assert package["logs/stdout.log"] == b"out 1\nout 2\nAITBC_PROGRESS=50 halfway\nout 3\n"
    assert package["logs/stderr.log"] == b"err 1\nerr 2\n"
