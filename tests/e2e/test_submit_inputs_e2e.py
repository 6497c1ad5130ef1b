"""`--input` says no before a job runs on the wrong thing: a word that names a file that is not there (a typo)
or a URL (no miner fetches one) is refused with what to do instead and submits nothing; `--input-text` sends
text as it is. The API refuses a URL input too."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def stored_input(stack: Stack, job_id: str) -> tuple[Any, str | None]:
    """The input a job was stored with (the status object does not show it), read from the SQLite file."""
    with closing(sqlite3.connect(f"file:{stack.data_dir / 'aitbc.db'}?mode=ro", uri=True)) as database:
        text, file_id = database.execute("SELECT input, input_file_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return (json.loads(text) if text is not None else None), file_id


def submitted_jobs(stack: Stack) -> list[dict[str, object]]:
    jobs: list[dict[str, object]] = stack.json("client", "list")["jobs"]
    return jobs


@pytest.mark.parametrize("value", ["./dta.txt", "data/prompts.txt", "~/no-such-file.csv", "prompts.txt"])
def test_an_input_that_names_a_missing_file_is_refused(stack: Stack, value: str) -> None:
    answer = stack.cli("client", "submit", "--type", "command", "--input", value, check=False)
    assert answer.returncode == 1, answer
    assert "no such file" in answer.stderr and "--input-text" in answer.stderr
    assert "Traceback" not in answer.stderr
    assert submitted_jobs(stack) == []


def test_a_url_input_is_refused_by_the_cli_and_the_api(stack: Stack) -> None:
    answer = stack.cli("client", "submit", "--model", "gpt2", "--input", "https://example.com/data.txt", check=False)
    assert answer.returncode == 1 and "is a URL" in answer.stderr and "--input-text" not in answer.stdout
    refused = httpx.post(
        f"{stack.url}/v1/jobs",
        json={"type": "command", "input": " https://example.com/data.txt "},
        headers={"X-Api-Key": stack.client_key},
    )
    assert refused.status_code == 422 and "input is a URL" in refused.text
    assert submitted_jobs(stack) == []


def test_text_files_and_json_still_go_as_they_did(stack: Stack, tmp_path: Path) -> None:
    literal = stack.cli("client", "submit", "--type", "command", "--input-text", "./dta.txt").stdout.strip()
    words = stack.cli("client", "submit", "--type", "command", "--input", "What is AI?").stdout.strip()
    document = stack.cli("client", "submit", "--type", "command", "--input", '{"prompt": "hi"}').stdout.strip()
    (tmp_path / "prompts.txt").write_text("one\ntwo\n")
    uploaded = stack.cli(
        "client", "submit", "--type", "command", "--input", str(tmp_path / "prompts.txt")
    ).stdout.strip()
    assert stored_input(stack, literal) == ("./dta.txt", None)
    assert stored_input(stack, words) == ("What is AI?", None)
    assert stored_input(stack, document) == ({"prompt": "hi"}, None)
    text, file_id = stored_input(stack, uploaded)
    assert text is None and file_id is not None and file_id.startswith("file_")
    both = stack.cli("client", "submit", "--type", "command", "--input", "x", "--input-text", "y", check=False)
    assert both.returncode == 1 and "not both" in both.stderr


def test_a_jobs_file_names_the_item_whose_input_is_missing(stack: Stack, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text(
        json.dumps([{"type": "command", "input_text": "data1.txt"}, {"type": "command", "input": "data2.txt"}])
    )
    answer = stack.cli("client", "batch-submit", "--jobs-file", str(jobs), check=False)
    assert answer.returncode != 0 and "item 1" in answer.stderr and "data2.txt: no such file" in answer.stderr
    assert submitted_jobs(stack) == []
    (tmp_path / "data2.txt").write_text("two\n")
    stack.cli("client", "batch-submit", "--jobs-file", str(jobs))
    stored = sorted(stored_input(stack, str(job["job_id"]))[0] or "(a file)" for job in submitted_jobs(stack))
    assert stored == ["(a file)", "data1.txt"]  # the second was uploaded as a file
