"""End to end with real processes: `aitbc serve`, `aitbc miner run` executing a command job that writes two
artifacts, and the `aitbc client` commands, `unzip`, `sha256sum` and `curl` as a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port

pytestmark = pytest.mark.e2e
AITBC = str(Path(sys.executable).with_name("aitbc"))
SCRIPT = (
    'echo "computing"; '
    'head -c 20000000 /dev/urandom > "$AITBC_ARTIFACTS_DIR/weights.bin"; '
    'mkdir -p "$AITBC_ARTIFACTS_DIR/plots"; echo "x,y" > "$AITBC_ARTIFACTS_DIR/plots/curve.csv"; '
    'echo "the answer is 42" > "$AITBC_RESULT_FILE"; echo "done" >&2'
)


@dataclass
class Stack:
    url: str
    home: Path
    data_dir: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [AITBC, *args], env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and done.returncode != 0:
            raise AssertionError(f"aitbc {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def tool(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    port = free_port()
    env = {**os.environ, "AITBC_CONFIG": str(tmp_path / "profile.json"), "COLUMNS": "160"}
    for name in ("AITBC_URL", "AITBC_API_KEY", "AITBC_COORDINATOR_KEY_FILE"):
        env.pop(name, None)
    data_dir = tmp_path / "data"
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [AITBC, "serve", "--port", str(port), "--data-dir", str(data_dir)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"aitbc serve did not start: {(tmp_path / 'serve.log').read_text()}")
        time.sleep(0.1)
    try:
        yield Stack(url=url, home=tmp_path, data_dir=data_dir, env=env)
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def run_job_with_a_real_miner(stack: Stack) -> str:
    miner_key = json.loads(
        stack.run(
            "admin", "keys", "create", "--name", "farm", "--role", "miner", "--data-dir", str(stack.data_dir), "--json"
        ).stdout
    )["api_key"]
    job_id = stack.run("client", "submit", "--type", "command", "--input", SCRIPT).stdout.strip()
    stack.run(
        "miner",
        "run",
        "--url",
        stack.url,
        "--api-key",
        miner_key,
        "--allow-command",
        "--runtimes",
        "command",
        "--gpus",
        "none",
        "--drain",
        "--work-dir",
        str(stack.home / "miner"),
        "--name",
        "e2e-miner",
    )
    status = json.loads(stack.run("client", "status", "--job-id", job_id, "--json").stdout)
    assert status["status"] == "completed", status
    return job_id


def test_download_verify_tamper_share_resume(stack: Stack) -> None:
    job_id = run_job_with_a_real_miner(stack)

    # The zip: `unzip -t` accepts it.
    zips = stack.home / "zips"
    stack.run("client", "download", "--job-id", job_id, "--output", str(zips), "--format", "zip")
    tested = stack.tool("unzip", "-t", str(zips / f"{job_id}.zip"))
    assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout

    # The folder: `sha256sum -c output.sha256` passes, and verify holds.
    results = stack.home / "results"
    stack.run("client", "download", "--job-id", job_id, "--output", str(results), "--checksum")
    folder = results / job_id
    assert (folder / "result.txt").read_text() == "the answer is 42\n"
    assert (folder / "artifacts" / "weights.bin").stat().st_size == 20_000_000
    assert (folder / "artifacts" / "plots" / "curve.csv").is_file()
    checked = stack.tool("sha256sum", "-c", "output.sha256", cwd=folder)
    assert checked.returncode == 0 and "artifacts/weights.bin: OK" in checked.stdout, checked.stdout
    verified = stack.run("client", "verify", "--job-id", job_id, "--path", str(folder))
    assert "Verified" in verified.stdout
    assert stack.run("client", "verify", "--job-id", job_id).returncode == 0

    # One flipped byte in an artifact: verify fails and names the file.
    artifact = folder / "artifacts" / "plots" / "curve.csv"
    original = artifact.read_bytes()
    artifact.write_bytes(original[:-1] + bytes([original[-1] ^ 0x20]))
    flipped = stack.run("client", "verify", "--job-id", job_id, "--path", str(folder), check=False)
    assert flipped.returncode == 1 and "artifacts/plots/curve.csv" in flipped.stderr
    artifact.write_bytes(original)

    # A replaced receipt signature: verify fails and names the signature.
    receipt_path = results / f"{job_id}.receipt.json"
    receipt = json.loads(receipt_path.read_text())
    receipt["signature"] = "A" * 86 + "=="
    receipt_path.write_text(json.dumps(receipt))
    forged = stack.run("client", "verify", "--job-id", job_id, "--path", str(folder), check=False)
    assert forged.returncode == 1 and "coordinator signature" in forged.stderr

    # A share link works with plain curl and no key, then not after --revoke (410).
    link = stack.run("client", "share", "--job-id", job_id, "--expires", "1h").stdout.strip()
    shared = stack.home / "shared.zip"
    fetched = stack.tool("curl", "-s", "-o", str(shared), "-w", "%{http_code}", link)
    assert fetched.stdout == "200" and shared.read_bytes() == (zips / f"{job_id}.zip").read_bytes()
    share_id = json.loads(stack.run("client", "share", "--job-id", job_id, "--list", "--json").stdout)["shares"][0]
    assert share_id["download_count"] == 1
    stack.run("client", "share", "--job-id", job_id, "--revoke", share_id["share_id"])
    assert stack.tool("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", link).stdout == "410"

    access_log = (stack.home / "serve.log").read_text()
    token = link.rsplit("/", 1)[1]
    assert "/v1/shared/<token>" in access_log and token not in access_log, "share tokens stay out of the log"

    # ... and not after its expiry (time moved on by rewriting the link's expiry in the server's database).
    second = stack.run("client", "share", "--job-id", job_id, "--expires", "30m").stdout.strip()
    assert stack.tool("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", second).stdout == "200"
    with sqlite3.connect(stack.data_dir / "aitbc.db") as database:
        database.execute("UPDATE result_shares SET expires_at = '2020-01-01 00:00:00.000000' WHERE revoked_at IS NULL")
    expired = stack.tool("curl", "-s", "-w", "\n%{http_code}", second)
    assert expired.stdout.endswith("410") and "expired" in expired.stdout
    assert stack.tool("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", second[:-3] + "xyz").stdout == "404"

    # A resumed download (Range) of the large artifact has the sha256 of a whole one.
    key = json.loads((stack.home / "profile.json").read_text())["api_key"]
    file_url = f"{stack.url}/v1/jobs/{job_id}/files/artifacts/weights.bin"
    header = f"X-Api-Key: {key}"
    whole, head_part, tail_part = stack.home / "whole.bin", stack.home / "head.bin", stack.home / "tail.bin"
    assert stack.tool("curl", "-sf", "-H", header, "-o", str(whole), file_url).returncode == 0
    assert stack.tool("curl", "-sf", "-H", header, "-r", "0-7340031", "-o", str(head_part), file_url).returncode == 0
    assert stack.tool("curl", "-sf", "-H", header, "-r", "7340032-", "-o", str(tail_part), file_url).returncode == 0
    resumed = hashlib.sha256(head_part.read_bytes() + tail_part.read_bytes()).hexdigest()
    assert resumed == hashlib.sha256(whole.read_bytes()).hexdigest()
    assert resumed == hashlib.sha256((folder / "artifacts" / "weights.bin").read_bytes()).hexdigest()
    zip_url = f"{stack.url}/v1/jobs/{job_id}/download"
    continued = stack.home / "continued.zip"
    continued.write_bytes((zips / f"{job_id}.zip").read_bytes()[:5_000_000])
    assert stack.tool("curl", "-sf", "-H", header, "-C", "-", "-o", str(continued), zip_url).returncode == 0
    assert continued.read_bytes() == (zips / f"{job_id}.zip").read_bytes()

    # Deleting: the job stays, downloads answer 410.
    stack.run("client", "delete", "--job-id", job_id, "--force")
    gone = stack.run("client", "download", "--job-id", job_id, "--output", str(stack.home / "again"), check=False)
    assert gone.returncode == 1 and "deleted" in gone.stderr
    assert json.loads(stack.run("client", "get", "--job-id", job_id, "--json").stdout)["results"] == "deleted"
