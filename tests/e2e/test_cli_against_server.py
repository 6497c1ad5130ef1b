"""End to end: `aitbc serve` as a real process, driven by `aitbc client` / `aitbc admin` as a user would."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.manifest import public_key_text, sign
from tests.live_server import free_port

pytestmark = pytest.mark.e2e
AITBC = str(Path(sys.executable).with_name("aitbc"))


@dataclass
class Server:
    url: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[str]
    banner: str

    def cli(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [AITBC, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"aitbc {' '.join(args)} exited {done.returncode}: {done.stdout}{done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    env = {**os.environ, "AITBC_CONFIG": str(tmp_path / "profile.json"), "COLUMNS": "200"}
    env.pop("AITBC_URL", None)
    env.pop("AITBC_API_KEY", None)
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [AITBC, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"aitbc serve did not start: {process.stdout.read() if process.stdout else ''}")
        time.sleep(0.1)
    banner = ""
    assert process.stdout is not None
    while "Coordinator on" not in banner:
        banner += process.stdout.readline()
    yield Server(url=url, data_dir=data_dir, env=env, process=process, banner=banner)
    process.terminate()
    process.wait(timeout=20)


class Miner:
    """A miner speaking the real protocol over HTTP, so the test decides when a job moves."""

    def __init__(self, url: str, api_key: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"X-Api-Key": api_key}, timeout=30)
        self.key = Ed25519PrivateKey.generate()
        registered = self.http.post(
            "/v1/miners/register",
            json={
                "name": "e2e",
                "runtimes": ["command"],
                "gpus": [{"model": "A100", "vram_gb": 80}],
                "public_key": public_key_text(self.key),
            },
        )
        assert registered.status_code == 200, registered.text
        self.id = registered.json()["miner_id"]

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(f"/v1/miners/{self.id}/{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def complete(self, job_id: str, lease: str, output: bytes) -> Any:
        put = self.http.put(
            f"/v1/miners/{self.id}/jobs/{job_id}/files/result.txt", content=output, headers={"X-Lease-Id": lease}
        )
        assert put.status_code == 200, put.text
        manifest = {
            "job_id": job_id,
            "miner_id": self.id,
            "files": [{"path": "result.txt", "size": len(output), "sha256": hashlib.sha256(output).hexdigest()}],
        }
        return self.post(
            f"jobs/{job_id}/complete",
            {"lease_id": lease, "manifest": manifest, "signature": sign(self.key, manifest), "exit_code": 0},
        )


def test_first_start_makes_keys_and_a_profile_that_the_client_uses(server: Server) -> None:
    assert "admin  key: aitbc_" in server.banner and "client key: aitbc_" in server.banner
    profile = json.loads(Path(server.env["AITBC_CONFIG"]).read_text())
    assert profile["url"] == server.url and profile["api_key"] in server.banner
    assert oct(Path(server.env["AITBC_CONFIG"]).stat().st_mode & 0o777) == "0o600"

    job_id = server.cli("client", "submit", "--type", "command", "--input", "echo hello").stdout.strip()
    assert job_id.startswith("job_")
    status = server.json("client", "status", "--job-id", job_id)
    assert status["status"] == "pending" and status["waiting_for"] == "no miner is connected"
    verbose = server.cli("client", "status", "--job-id", job_id, "--verbose").stdout
    assert "Timeline" in verbose and "Requirements" in verbose
    human = server.cli("client", "status", "--job-id", job_id).stdout
    assert job_id in human and "pending" in human and "no miner is connected" in human
    listed = server.json("client", "list")
    assert [j["job_id"] for j in listed["jobs"]] == [job_id] and listed["total"] == 1
    assert server.json("client", "list", "--status", "completed")["jobs"] == []


def test_a_job_runs_end_to_end_and_watch_follows_it(server: Server) -> None:
    miner_key = server.json(
        "admin", "keys", "create", "--name", "farm", "--role", "miner", "--data-dir", str(server.data_dir)
    )["api_key"]
    miner = Miner(server.url, miner_key)
    job_id = server.cli(
        "client",
        "submit",
        "--type",
        "command",
        "--input",
        '{"script": "echo hi"}',
        "--gpu",
        "a100",
        "--priority",
        "high",
        "--timeout",
        "120",
        "--workflow-config",
        '{"temperature": 0.5}',
    ).stdout.strip()
    job = server.json("client", "get", "--job-id", job_id)
    assert job["requirements"]["gpu_type"] == "a100" and job["priority"] == "high"
    assert job["params"] == {"temperature": 0.5} and job["timeout_seconds"] == 120

    (assignment,) = miner.post("claim", {"max_jobs": 1, "wait_seconds": 5})["jobs"]
    assert assignment["job_id"] == job_id and assignment["input"] == {"script": "echo hi"}
    lease = assignment["lease_id"]
    miner.post(f"jobs/{job_id}/start", {"lease_id": lease})
    miner.post(f"jobs/{job_id}/progress", {"lease_id": lease, "progress": 45, "message": "halfway"})
    status = server.json("client", "status", "--job-id", job_id)
    assert (status["status"], status["progress"], status["miner_id"]) == ("running", 45, miner.id)
    assert status["started_at"].endswith("Z")

    errors = (server.data_dir / "watch.err").open("w")
    watcher = subprocess.Popen(
        [AITBC, "client", "watch", "--job-id", job_id, "--json"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    assert watcher.stdout is not None
    first = watcher.stdout.readline()  # the watcher is connected and replaying the job's events
    assert first.strip() == "{" and watcher.poll() is None
    miner.post(f"jobs/{job_id}/progress", {"lease_id": lease, "progress": 90})
    miner.complete(job_id, lease, b"hi\n")
    out = first + watcher.stdout.read()  # through the same buffered reader: nothing it read ahead is lost
    assert watcher.wait(timeout=30) == 0, (server.data_dir / "watch.err").read_text()
    assert '"progress": 45' in out and '"progress": 90' in out and '"status": "completed"' in out

    cancel = server.cli("client", "cancel", "--job-id", job_id, "--force", check=False)
    assert cancel.returncode == 1 and "already completed" in cancel.stdout


def test_cancel_asks_for_confirmation_and_watch_reports_it(server: Server) -> None:
    job_id = server.cli("client", "submit", "--type", "command", "--input", "sleep 600").stdout.strip()
    refused = server.cli("client", "cancel", "--job-id", job_id, check=False)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert server.json("client", "status", "--job-id", job_id)["status"] == "pending"
    canceled = server.json("client", "cancel", "--job-id", job_id, "--force")
    assert canceled["outcome"] == "canceled"
    watch = server.cli("client", "watch", "--job-id", job_id, check=False)
    assert watch.returncode == 2 and "canceled" in watch.stdout


def test_admin_commands_and_connection_settings(server: Server) -> None:
    created = server.json("admin", "keys", "create", "--name", "carol", "--role", "client", "--plan", "pro")
    assert created["api_key"].startswith("aitbc_") and created["plan"] == "pro"
    accounts = server.json("admin", "accounts", "list")
    assert {"admin", "default", "carol"} <= {a["name"] for a in accounts}
    env = {"AITBC_API_KEY": created["api_key"]}
    mine = server.cli("client", "submit", "--type", "command", "--input", "x", env=env).stdout.strip()
    default_jobs = server.json("client", "list")["jobs"]
    assert mine not in [j["job_id"] for j in default_jobs]
    other = server.cli("client", "status", "--job-id", mine, check=False)
    assert other.returncode == 1 and "not found" in other.stderr
    keys = server.json("admin", "keys", "list", "--account", "carol")
    server.cli("admin", "keys", "revoke", keys[0]["key_id"])
    revoked = server.cli("client", "list", env=env, check=False)
    assert revoked.returncode == 1 and "revoked" in revoked.stderr
    unreachable = server.cli("client", "list", "--url", "http://127.0.0.1:9", check=False)
    assert unreachable.returncode == 1 and "cannot reach the coordinator" in unreachable.stderr
    no_key = server.cli("client", "list", env={"AITBC_CONFIG": str(server.data_dir / "none.json")}, check=False)
    assert no_key.returncode == 1 and "no API key" in no_key.stderr


def test_admin_keys_create_on_a_fresh_data_folder_without_a_server(tmp_path: Path) -> None:
    env = {**os.environ, "AITBC_CONFIG": str(tmp_path / "p.json")}
    for database in (["--data-dir", str(tmp_path / "fresh")],):
        done = subprocess.run(
            [AITBC, "admin", "keys", "create", "--name", "x", "--role", "admin", *database, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["api_key"].startswith("aitbc_")
    assert (tmp_path / "fresh" / "aitbc.db").exists()


def test_credits_balance_and_ledger_from_the_cli(server: Server) -> None:
    start = server.json("client", "balance")
    assert (start["account"], start["held"], start["available"]) == ("default", "0.000000000", "1.000000000")
    granted = server.json("admin", "keys", "create", "--name", "dora", "--role", "client")
    server.cli("admin", "credits", "grant", "--account", "dora", "--amount", "2.5")
    direct = server.json(
        "admin", "credits", "grant", "--account", "dora", "--amount", "0.5", "--data-dir", str(server.data_dir)
    )
    assert direct["available"] == "4.000000000"  # 1 welcome + 2.5 + 0.5
    bad = server.cli("admin", "credits", "grant", "--account", "dora", "--amount", "1e3", check=False)
    assert bad.returncode == 1 and "not an amount" in bad.stderr
    env = {"AITBC_API_KEY": granted["api_key"]}
    job_id = server.cli(
        "client", "submit", "--type", "command", "--input", "x", "--gpu", "a100", "--timeout", "3600", env=env
    ).stdout.strip()
    balance = json.loads(server.cli("client", "balance", "--json", env=env).stdout)
    assert (balance["held"], balance["available"]) == ("0.100000000", "3.900000000")
    ledger = json.loads(server.cli("billing", "list", "--json", env=env).stdout)
    assert [e["kind"] for e in ledger] == ["grant", "grant", "grant", "hold"]
    assert ledger[-1]["job_id"] == job_id and ledger[-1]["amount"] == "-0.100000000"
    human = server.cli("billing", "list", env=env).stdout
    assert "hold" in human and "-0.1" in human
    too_big = server.cli(
        "client",
        "submit",
        "--type",
        "command",
        "--input",
        "x",
        "--gpu",
        "a100",
        "--gpu-count",
        "8",
        "--priority",
        "urgent",
        "--timeout",
        "86400",
        env=env,
        check=False,
    )
    assert too_big.returncode == 1 and "available balance" in too_big.stderr
