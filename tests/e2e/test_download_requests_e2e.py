"""`aitbc client download` of a package of 80 artifacts by a free-plan account (60 requests a minute), with
`aitbc serve` and `aitbc miner run` as real processes: the package comes in one request (the streamed zip),
three requests in all as the coordinator's access log counts them, so the download never runs into the plan's
limit half-way; every file arrives whole."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
ARTIFACTS = 80
SCRIPT = (
    f'for i in $(seq 1 {ARTIFACTS}); do echo "artifact $i" > "$AITBC_ARTIFACTS_DIR/part-$i.txt"; done; '
    'echo "wrote them" > "$AITBC_RESULT_FILE"'
)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """uvicorn's access log on: the test counts the requests in it."""
    made = Stack(tmp_path, log_level="info")
    made.start_server()
    try:
        yield made
    finally:
        made.close()


def requests_for(log: str, job_id: str) -> list[tuple[str, str, str]]:
    """(method, path, status) of each request about the job in uvicorn's access log."""
    found: list[tuple[str, str, str]] = re.findall(
        rf'"(GET|POST|PUT|DELETE) (/v1/jobs/{job_id}\S*) HTTP/1\.1" (\d+)', log
    )
    return found


def test_eighty_artifacts_download_in_one_request_on_the_free_plan(stack: Stack) -> None:
    job_id = stack.submit("--type", "command", "--input", SCRIPT)
    miner = stack.start_miner("drain", "--allow-command", "--runtimes", "command", "--drain")
    assert miner.wait(timeout=120) == 0, stack.miner_log("drain")
    assert stack.job(job_id)["status"] == "completed"
    plan = next(a["plan"] for a in stack.json("admin", "accounts", "list") if a["name"] == "default")
    assert plan == "free"

    before = len(stack.server_log.read_text())
    out = stack.root / "results"
    stack.cli("client", "download", "--job-id", job_id, "--output", str(out), "--checksum")
    requests = requests_for(stack.server_log.read_text()[before:], job_id)

    assert [(method, path.split(job_id)[1], status) for method, path, status in requests] == [
        ("GET", "/results", "200"),
        ("GET", "/download", "200"),
        ("GET", "/receipt", "200"),
    ]
    folder = out / job_id
    artifacts = sorted(path.name for path in (folder / "artifacts").iterdir())
    assert len(artifacts) == ARTIFACTS and (folder / "artifacts" / "part-80.txt").read_text() == "artifact 80\n"
    assert (folder / "result.txt").read_text() == "wrote them\n"
    for line in (folder / "output.sha256").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert sorted(path.name for path in out.iterdir()) == [job_id, f"{job_id}.receipt.json"]  # no zip left over
