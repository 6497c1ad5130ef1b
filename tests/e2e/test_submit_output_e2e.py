"""`aitbc client submit … --output DIR` as the submission guide shows it: wait, then download the results."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    try:
        stack.start_server()
        stack.start_miner("local", "--allow-command", "--runtimes", "command", "--claim-wait", "2")
        yield stack
    finally:
        stack.close()


def test_submit_with_output_waits_and_downloads(stack: Stack, tmp_path: Path) -> None:
    script = 'echo AITBC_PROGRESS=50; echo hi > "$AITBC_ARTIFACTS_DIR/a.txt"; echo done'
    answer = stack.cli("client", "submit", "--type", "command", "--input", script, "--output", str(tmp_path / "out"))
    job_id = answer.stdout.splitlines()[0].strip()
    folder = tmp_path / "out" / job_id
    assert (folder / "result.txt").read_text() == "done\n"
    assert (folder / "artifacts" / "a.txt").read_text() == "hi\n"
    for line in (folder / "output.sha256").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((folder / name.lstrip("*")).read_bytes()).hexdigest() == digest

    failing = stack.cli(
        "client",
        "submit",
        "--type",
        "command",
        "--input",
        "echo oops >&2; exit 3",
        "--output",
        str(tmp_path / "out"),
        check=False,
    )
    assert failing.returncode == 1
    failed_id = failing.stdout.splitlines()[0].strip()
    assert "oops" in (tmp_path / "out" / failed_id / "logs" / "stderr.log").read_text()
