"""End to end with real processes: `aitbc serve`, `aitbc miner run` executing a command job that writes two
artifacts, and the `aitbc client` commands, `unzip`, `sha256sum` and `curl` as a user runs them."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
SCRIPT = (
    'echo "computing"; '
    'head -c 20000000 /dev/urandom > "$AITBC_ARTIFACTS_DIR/weights.bin"; '
    'mkdir -p "$AITBC_ARTIFACTS_DIR/plots"; echo "x,y" > "$AITBC_ARTIFACTS_DIR/plots/curve.csv"; '
    'echo "the answer is 42" > "$AITBC_RESULT_FILE"; echo "done" >&2'
)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The shared stack, with uvicorn's access log on (the test reads it for leaked share tokens)."""
    made = Stack(tmp_path, log_level="info")
    made.start_server()
    try:
        yield made
    finally:
        made.close()


def tool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


def run_job_with_a_real_miner(stack: Stack) -> str:
    job_id = stack.submit("--type", "command", "--input", SCRIPT)
    miner = stack.start_miner("e2e-miner", "--allow-command", "--runtimes", "command", "--drain")
    assert miner.wait(timeout=120) == 0, stack.miner_log("e2e-miner")
    status = stack.json("client", "status", "--job-id", job_id)
    assert status["status"] == "completed", status
    return job_id


def test_download_verify_tamper_share_resume(stack: Stack) -> None:
    job_id = run_job_with_a_real_miner(stack)

    # The zip: `unzip -t` accepts it.
    zips = stack.root / "zips"
    stack.cli("client", "download", "--job-id", job_id, "--output", str(zips), "--format", "zip")
    tested = tool("unzip", "-t", str(zips / f"{job_id}.zip"))
    assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout

    # The folder: `sha256sum -c output.sha256` passes, and verify holds.
    results = stack.root / "results"
    stack.cli("client", "download", "--job-id", job_id, "--output", str(results), "--checksum")
    folder = results / job_id
    assert (folder / "result.txt").read_text() == "the answer is 42\n"
    assert (folder / "artifacts" / "weights.bin").stat().st_size == 20_000_000
    assert (folder / "artifacts" / "plots" / "curve.csv").is_file()
    checked = tool("sha256sum", "-c", "output.sha256", cwd=folder)
    assert checked.returncode == 0 and "artifacts/weights.bin: OK" in checked.stdout, checked.stdout
    verified = stack.cli("client", "verify", "--job-id", job_id, "--path", str(folder))
    assert "Verified" in verified.stdout
    assert stack.cli("client", "verify", "--job-id", job_id).returncode == 0

    # One flipped byte in an artifact: verify fails and names the file.
    artifact = folder / "artifacts" / "plots" / "curve.csv"
    original = artifact.read_bytes()
    artifact.write_bytes(original[:-1] + bytes([original[-1] ^ 0x20]))
    flipped = stack.cli("client", "verify", "--job-id", job_id, "--path", str(folder), check=False)
    assert flipped.returncode == 1 and "artifacts/plots/curve.csv" in flipped.stderr
    artifact.write_bytes(original)

    # A replaced receipt signature: verify fails and names the signature.
    receipt_path = results / f"{job_id}.receipt.json"
    receipt = json.loads(receipt_path.read_text())
    receipt["signature"] = "A" * 86 + "=="
    receipt_path.write_text(json.dumps(receipt))
    forged = stack.cli("client", "verify", "--job-id", job_id, "--path", str(folder), check=False)
    assert forged.returncode == 1 and "coordinator signature" in forged.stderr

    # A share link works with plain curl and no key, then not after --revoke (410).
    link = stack.cli("client", "share", "--job-id", job_id, "--expires", "1h").stdout.strip()
    shared = stack.root / "shared.zip"
    fetched = tool("curl", "-s", "-o", str(shared), "-w", "%{http_code}", link)
    assert fetched.stdout == "200" and shared.read_bytes() == (zips / f"{job_id}.zip").read_bytes()
    share_id = stack.json("client", "share", "--job-id", job_id, "--list")["shares"][0]
    assert share_id["download_count"] == 1
    stack.cli("client", "share", "--job-id", job_id, "--revoke", share_id["share_id"])
    assert tool("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", link).stdout == "410"

    access_log = stack.server_log.read_text()
    token = link.rsplit("/", 1)[1]
    assert "/v1/shared/<token>" in access_log and token not in access_log, "share tokens stay out of the log"

    # ... and not after its expiry (time moved on by rewriting the link's expiry in the server's database).
    second = stack.cli("client", "share", "--job-id", job_id, "--expires", "30m").stdout.strip()
    assert tool("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", second).stdout == "200"
    with sqlite3.connect(stack.data_dir / "aitbc.db") as database:
        database.execute("UPDATE result_shares SET expires_at = '2020-01-01 00:00:00.000000' WHERE revoked_at IS NULL")
    expired = tool("curl", "-s", "-w", "\n%{http_code}", second)
    assert expired.stdout.endswith("410") and "expired" in expired.stdout
    assert tool("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", second[:-3] + "xyz").stdout == "404"

    # A resumed download (Range) of the large artifact has the sha256 of a whole one.
    key = stack.client_key
    file_url = f"{stack.url}/v1/jobs/{job_id}/files/artifacts/weights.bin"
    header = f"X-Api-Key: {key}"
    whole, head_part, tail_part = stack.root / "whole.bin", stack.root / "head.bin", stack.root / "tail.bin"
    assert tool("curl", "-sf", "-H", header, "-o", str(whole), file_url).returncode == 0
    assert tool("curl", "-sf", "-H", header, "-r", "0-7340031", "-o", str(head_part), file_url).returncode == 0
    assert tool("curl", "-sf", "-H", header, "-r", "7340032-", "-o", str(tail_part), file_url).returncode == 0
    resumed = hashlib.sha256(head_part.read_bytes() + tail_part.read_bytes()).hexdigest()
    assert resumed == hashlib.sha256(whole.read_bytes()).hexdigest()
    assert resumed == hashlib.sha256((folder / "artifacts" / "weights.bin").read_bytes()).hexdigest()
    zip_url = f"{stack.url}/v1/jobs/{job_id}/download"
    continued = stack.root / "continued.zip"
    continued.write_bytes((zips / f"{job_id}.zip").read_bytes()[:5_000_000])
    assert tool("curl", "-sf", "-H", header, "-C", "-", "-o", str(continued), zip_url).returncode == 0
    assert continued.read_bytes() == (zips / f"{job_id}.zip").read_bytes()

    # Deleting: the job stays, downloads answer 410.
    stack.cli("client", "delete", "--job-id", job_id, "--force")
    gone = stack.cli("client", "download", "--job-id", job_id, "--output", str(stack.root / "again"), check=False)
    assert gone.returncode == 1 and "deleted" in gone.stderr
    assert stack.json("client", "get", "--job-id", job_id)["results"] == "deleted"
