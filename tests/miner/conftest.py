"""A live stack for the miner's end-to-end tests: `aitbc serve` and `aitbc miner run` as real processes on a
free port, with a temporary data folder and CLI profile; and helpers to drive them as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.wiring import open_coordinator
from tests.live_server import free_port

T = TypeVar("T")
AITBC = [sys.executable, "-c", "from aitbc.cli.main import main; main()"]
START_TIMEOUT = 30.0


def wait_until(check: Callable[[], T | None], timeout: float, interval: float = 0.05, what: str = "condition") -> T:
    """Poll `check` every `interval` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def processes_named(marker: str) -> list[int]:
    """Host pids of processes whose command line holds `marker` (a job names its own with `exec -a`: its pid
    inside its sandbox means nothing out here)."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in found.split()]


def all_gone(marker: str, timeout: float = 10) -> bool:
    """Whether every process named `marker` is gone, waiting a little: the kernel kills what is left in a PID
    namespace as its first process dies, and those processes take a moment to exit."""
    wait_until(lambda: not processes_named(marker), timeout, what=f"the processes named {marker} to end")
    return True


def unique_marker() -> str:
    return f"aitbc-test-{uuid.uuid4().hex}"


def job_folder(work_dir: Path, timeout: float = 20) -> Path:
    """The scratch folder of the one job a miner with this work dir is running (seen from the host, as root:
    a test reaches into it to let the job go on, as the job itself cannot see any of the host's folders)."""
    from aitbc.miner.sandbox import HostUser, ScratchFolders

    base = ScratchFolders.default_base(work_dir, HostUser.for_jobs())

    def one() -> Path | None:
        found = [path for path in base.iterdir() if path.is_dir()] if base.is_dir() else []
        return found[0] if len(found) == 1 and (found[0] / "work").is_dir() else None

    return wait_until(one, timeout, what=f"a job folder under {base}")


def process_gone(pid: int) -> bool:
    """Gone, or a zombie waiting for a parent that no longer cares (it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


class Stack:
    """One coordinator process, any number of miner processes, and the CLI, all on a temp folder."""

    def __init__(self, root: Path, lease_seconds: int = 60, database_url: str | None = None) -> None:
        self.root = root
        self.database_url = database_url  # None: SQLite in the data folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = root / "data"
        self.lease_seconds = lease_seconds
        self.environment = {
            **os.environ,
            "AITBC_CONFIG": str(root / "profile.json"),
            "AITBC_URL": self.url,
            "PYTHONUNBUFFERED": "1",
        }
        self.environment.pop("AITBC_API_KEY", None)
        self.server: subprocess.Popen[bytes] | None = None
        self.miners: list[subprocess.Popen[bytes]] = []
        self.miner_names: set[str] = set()
        self.client_key = ""
        self.admin_key = ""
        self.miner_key = ""

    # -- processes ----------------------------------------------------------------------------------

    def start_server(self, *options: str) -> None:
        log = (self.root / "serve.log").open("ab")
        self.server = subprocess.Popen(
            [
                *AITBC,
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--lease-seconds",
                str(self.lease_seconds),
                "--log-level",
                "warning",
                *(["--database-url", self.database_url] if self.database_url else []),
                *options,
            ],
            env=self.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._healthy, START_TIMEOUT, interval=0.1, what="the coordinator to answer")
        profile = self.root / "profile.json"
        if not profile.exists():  # the data folder had keys before serve's first start: make our own
            keys = {
                name: self.new_key(name, role) for name, role in (("api_key", "client"), ("admin_api_key", "admin"))
            }
            profile.write_text(json.dumps({"url": self.url, **keys}))
        keys = json.loads(profile.read_text())
        self.client_key, self.admin_key = keys["api_key"], keys["admin_api_key"]

    def new_key(self, account: str, role: str) -> str:
        """An API key made on the data folder's database directly, as `aitbc admin keys create --data-dir`
        does (through the same account service), without paying for a CLI start-up each time."""

        async def make() -> str:
            settings = Settings(data_dir=self.data_dir, database_url=self.database_url, run_reaper=False)
            coordinator = await open_coordinator(settings)
            try:
                return (await coordinator.accounts.create_key(account, Role(role))).secret
            finally:
                await coordinator.close()

        return asyncio.run(make())

    def _healthy(self) -> bool:
        assert self.server is not None
        if self.server.poll() is not None:
            raise AssertionError("aitbc serve exited:\n" + (self.root / "serve.log").read_text())
        try:
            return httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop_server(self, signum: int = signal.SIGTERM) -> None:
        assert self.server is not None
        self.server.send_signal(signum)
        self.server.wait(timeout=20)
        self.server = None

    def make_miner_key(self) -> str:
        self.miner_key = self.new_key("miners", "miner")
        return self.miner_key

    def start_miner(self, name: str, *options: str) -> subprocess.Popen[bytes]:
        if not self.miner_key:
            self.make_miner_key()
        log = (self.root / f"miner-{name}.log").open("ab")
        process = subprocess.Popen(
            [
                *AITBC,
                "miner",
                "run",
                "--name",
                name,
                "--work-dir",
                str(self.work_dir(name)),
                "--gpus",
                "none",
                *options,
            ],
            env={**self.environment, "AITBC_API_KEY": self.miner_key},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.miners.append(process)
        self.miner_names.add(name)
        return process

    def work_dir(self, name: str) -> Path:
        return self.root / "miners" / name

    def miner_log(self, name: str) -> str:
        path = self.root / f"miner-{name}.log"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        from aitbc.miner.config import MinerConfig
        from aitbc.miner.sandboxed_run import clear_leftovers

        for process in self.miners:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for name in self.miner_names:  # what a killed miner leaves (job folders, cgroups): its next start would
            clear_leftovers(MinerConfig(url=self.url, api_key="", name=name, work_dir=self.work_dir(name)))
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait(timeout=10)

    # -- the user's side ----------------------------------------------------------------------------

    def cli(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        answer = subprocess.run(
            [*AITBC, *arguments], env=self.environment, capture_output=True, text=True, timeout=60, check=False
        )
        if check and answer.returncode != 0:
            raise AssertionError(f"aitbc {' '.join(arguments)} exited {answer.returncode}:\n{answer.stderr}")
        return answer

    def submit(self, *options: str) -> str:
        """Submit with the CLI, as a user would."""
        return self.cli("client", "submit", *options).stdout.strip()

    def post_job(self, **body: Any) -> str:
        """Submit through the HTTP API (what the CLI does, without its start-up time)."""
        answer = httpx.post(f"{self.url}/v1/jobs", json=body, headers={"X-Api-Key": self.client_key}, timeout=10)
        assert answer.status_code in (200, 201), answer.text
        job_id: str = answer.json()["job_id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        """The status object, through the HTTP API (quicker than the CLI for polling). Polled with the admin
        key: admins are not rate-limited, and the client's own plan allows only so many requests a minute."""
        answer = httpx.get(f"{self.url}/v1/jobs/{job_id}", headers={"X-Api-Key": self.admin_key}, timeout=10)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def wait_status(self, job_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
        return wait_until(
            lambda: (job := self.job(job_id))["status"] in statuses and job,
            timeout,
            what=f"{job_id} to become {' or '.join(sorted(statuses))}",
        )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    made = Stack(tmp_path)
    made.start_server()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def short_lease_stack(tmp_path: Path) -> Iterator[Stack]:
    made = Stack(tmp_path, lease_seconds=3)
    made.start_server()
    try:
        yield made
    finally:
        made.close()


def stored_package(stack: Stack, job_id: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The result the coordinator accepted for a job: its record (manifest, signature, partial) and the
    bytes of every file, read from the coordinator's database and blob folder on disk."""
    import sqlite3

    with sqlite3.connect(stack.data_dir / "aitbc.db") as database:
        database.row_factory = sqlite3.Row
        result = database.execute("SELECT * FROM job_results WHERE job_id = ?", (job_id,)).fetchone()
        assert result is not None, f"no result stored for {job_id}"
        rows = database.execute(
            "SELECT path, size, sha256, blob_key FROM result_files WHERE job_id = ? AND lease_id = ?",
            (job_id, result["lease_id"]),
        ).fetchall()
    record = dict(result)
    record["manifest"] = json.loads(record["manifest"])
    files = {row["path"]: (stack.data_dir / "blobs" / row["blob_key"]).read_bytes() for row in rows}
    return record, files
