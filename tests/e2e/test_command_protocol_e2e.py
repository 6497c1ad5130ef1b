"""The README's command job example, run as it says (`submit --input job.sh`, `watch`, `download`) against
`aitbc serve` and `aitbc miner run` as real processes: every variable of the script protocol does what the
README's table says, and the `AITBC_PROGRESS=` lines drive the progress without showing up as log lines."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The first bash block of the README's section on command jobs: the example `job.sh`."""
    section = README.read_text().split("### Command jobs: the script protocol", 1)[1]
    found = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README's command job section has no example script"
    return found[1]


def test_the_readmes_example_script_runs_as_documented(stack: Stack) -> None:
    script = stack.root / "job.sh"
    script.write_text(readme_example())
    job_id = stack.submit("--type", "command", "--input", str(script), "--workflow-config", '{"name": "demo"}')
    as_json = stack.cli_running("client", "watch", "--job-id", job_id, "--json")
    human = stack.cli_running("client", "watch", "--job-id", job_id)
    as_json.wait_for_line(lambda line: json.loads(line)["status"] == "pending")  # following it, live
    miner = stack.start_miner("drain", "--allow-command", "--runtimes", "command", "--drain")
    assert miner.wait(timeout=120) == 0, stack.miner_log("drain")

    assert as_json.wait() == 0 and human.wait() == 0, as_json.stderr + human.stderr
    lines = [json.loads(line) for line in as_json.stdout_lines]
    events, final = lines[:-1], lines[-1]
    assert final["status"] == "completed" and final["progress"] == 100
    logged = [item["line"] for event in events if event["kind"] == "log" for item in event["data"]["lines"]]
    assert logged == ["step 1 of 3", "step 2 of 3", "step 3 of 3", "a line on stderr"]
    for before, event in itertools.pairwise(events):
        if event["kind"] == "log":  # a log event carries the job's progress as it was then
            assert event["progress"] == before["progress"], (before, event)
    reported = [event["progress"] for event in events if event["kind"] == "progress"]
    assert reported == sorted(reported) and 10 < reported[-1] <= 100  # batched about once a second
    assert "step 2 of 3" in human.stdout and "AITBC_PROGRESS" not in human.stdout + human.stderr

    out = stack.root / "results"
    stack.cli("client", "download", "--job-id", job_id, "--output", str(out))
    folder = out / job_id
    assert (folder / "result.txt").read_text() == "sum: 500500\n"
    assert (folder / "artifacts" / "numbers.txt").read_text().splitlines()[-1] == "1000"
    assert json.loads((folder / "artifacts" / "params.json").read_text()) == {"name": "demo"}
    stdout_log = (folder / "logs" / "stdout.log").read_text()
    assert "AITBC_PROGRESS=40 step 1 done" in stdout_log and "step 3 of 3" in stdout_log  # the raw record
    assert (folder / "logs" / "stderr.log").read_text() == "a line on stderr\n"
