"""`aitbc client batch-submit --jobs-file jobs.json` and `aitbc client submit-batch --file jobs.yaml` as the
submission guide writes them, against a real coordinator on a socket (uvicorn in a thread); and the YAML's
`output:` folders with a real miner (`aitbc serve` and `aitbc miner run` as processes)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aitbc.cli.main import app
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.support.served import served_in_thread
from tests.support.stack import Stack

# The guide's jobs.json, as it writes it.
GUIDE_JOBS = [
    {"model": "gpt2", "input": "What is machine learning?", "priority": "normal"},
    {"model": "llama", "input": "Explain blockchain", "priority": "high"},
]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    """A coordinator in a thread, the CLI's environment pointing at it with a client key; yields an HTTP client
    with that key, to look at what the CLI stored."""
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False)

    async def bootstrap() -> str:
        async with coordinator_session(settings) as coordinator:
            _admin, user = await coordinator.accounts.bootstrap()
        return user.secret

    key = asyncio.run(bootstrap())
    with served_in_thread(settings) as url:
        monkeypatch.setenv("AITBC_URL", url)
        monkeypatch.setenv("AITBC_API_KEY", key)
        monkeypatch.setenv("AITBC_CONFIG", str(tmp_path / "profile.json"))
        monkeypatch.setenv("COLUMNS", "200")
        with httpx.Client(base_url=url, headers={"X-Api-Key": key}, timeout=30) as http:
            yield http


def aitbc(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def stored(http: httpx.Client) -> list[dict[str, object]]:
    jobs: list[dict[str, object]] = http.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    return jobs


def test_batch_submit_the_guides_jobs_json(served: httpx.Client, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.json"
    jobs_file.write_text(json.dumps(GUIDE_JOBS, indent=2))
    code, out, _ = aitbc("client", "batch-submit", "--jobs-file", str(jobs_file), "--json")
    assert code == 0, out
    answer = json.loads(out)
    assert answer["created"] == 2
    assert [(r["job"]["model"], r["job"]["priority"]) for r in answer["jobs"]] == [
        ("gpt2", "normal"),
        ("llama", "high"),
    ]
    assert {job["job_id"] for job in stored(served)} == {r["job"]["job_id"] for r in answer["jobs"]}

    code, out, _ = aitbc("client", "batch-submit", "--jobs-file", str(jobs_file))
    assert code == 0, out
    assert "2 jobs submitted" in out and "gpt2" in out and "llama" in out
    assert len(stored(served)) == 4


def test_a_refused_item_is_named_and_nothing_is_submitted(served: httpx.Client, tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.json"
    jobs_file.write_text(json.dumps([*GUIDE_JOBS, {"model": "gpt2", "timeout": 0}]))
    code, _, err = aitbc("client", "batch-submit", "--jobs-file", str(jobs_file))
    assert code == 1
    assert "jobs.2.timeout_seconds" in err and "item 2 of" in err and "no job of the batch was submitted" in err

    jobs_file.write_text(json.dumps([*GUIDE_JOBS, {"model": "gpt2", "modle": "x"}]))
    code, _, err = aitbc("client", "batch-submit", "--jobs-file", str(jobs_file))
    assert code == 1 and "item 2 has an unknown field 'modle'" in err

    jobs_file.write_text(json.dumps([{"model": "gpt2"}] * 1001))
    code, _, err = aitbc("client", "batch-submit", "--jobs-file", str(jobs_file))
    assert code == 1 and "at most 1000" in err

    yaml_file = tmp_path / "jobs.yaml"
    yaml_file.write_text("jobs:\n  - model: gpt2\n    input: [unclosed\n")
    code, _, err = aitbc("client", "submit-batch", "--file", str(yaml_file))
    assert code == 1 and "is not valid YAML" in err
    assert stored(served) == []


def test_submit_batch_reads_the_guides_yaml_and_uploads_input_files(served: httpx.Client, tmp_path: Path) -> None:
    (tmp_path / "data1.txt").write_text("first")
    (tmp_path / "data2.txt").write_text("second")
    yaml_file = tmp_path / "jobs.yaml"
    yaml_file.write_text("jobs:\n  - model: gpt2\n    input: data1.txt\n  - model: gpt2\n    input: data2.txt\n")
    code, out, _ = aitbc("client", "submit-batch", "--file", str(yaml_file), "--json")
    assert code == 0, out
    jobs = [r["job"] for r in json.loads(out)["jobs"]]
    assert [job["type"] for job in jobs] == ["text-generation", "text-generation"]
    with sqlite3.connect(tmp_path / "data" / "aitbc.db") as database:
        inputs = dict(
            database.execute(
                "SELECT jobs.id, input_files.name FROM jobs JOIN input_files ON input_files.id = jobs.input_file_id"
            )
        )
    assert inputs == {jobs[0]["job_id"]: "data1.txt", jobs[1]["job_id"]: "data2.txt"}


@pytest.fixture
def mined(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    try:
        stack.start_server()
        stack.start_miner("local", "--allow-command", "--runtimes", "command", "--claim-wait", "2")
        yield stack
    finally:
        stack.close()


@pytest.mark.e2e
def test_yaml_output_folders_wait_for_the_jobs_and_download_their_results(mined: Stack, tmp_path: Path) -> None:
    yaml_file = tmp_path / "jobs.yaml"
    yaml_file.write_text(
        "jobs:\n"
        "  - type: command\n"
        "    input: echo one\n"
        f"    output: {tmp_path / 'results1'}\n"
        "  - type: command\n"
        "    input: echo two\n"
        f"    output: {tmp_path / 'results2'}\n"
        "  - type: command\n"
        "    input: echo three\n"
    )
    answer = mined.cli("client", "submit-batch", "--file", str(yaml_file), timeout=120)
    assert "3 jobs submitted" in answer.stdout and "How the jobs ended" in answer.stdout
    for folder, text in (("results1", "one\n"), ("results2", "two\n")):
        (downloaded,) = [path for path in (tmp_path / folder).iterdir() if path.is_dir()]
        assert downloaded.name.startswith("job_")
        assert (downloaded / "result.txt").read_text() == text
        assert (downloaded / "output.sha256").is_file()
        assert (tmp_path / folder / f"{downloaded.name}.receipt.json").is_file()
