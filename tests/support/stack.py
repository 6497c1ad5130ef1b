"""A live stack as a user runs it: `aitbc serve` and `aitbc miner run` as real processes on a free port, with
a temporary data folder and CLI profile, the CLI to drive them, and the HTTP API to read what they did."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from aitbc.domain.job import Job
from aitbc.domain.plans import Role
from aitbc.sdk.config import load_profiles
from aitbc.settings import Settings
from aitbc.wiring import Coordinator, open_coordinator
from tests.support.packages import Package, read_package
from tests.support.running_cli import RunningCli
from tests.support.served import START_TIMEOUT, free_port, healthy
from tests.support.waiting import wait_until

T = TypeVar("T")
AITBC = [sys.executable, "-c", "from aitbc.cli.main import main; main()"]


class Stack:
    """One coordinator process, any number of miner processes, and the CLI, all on a temp folder."""

    def __init__(
        self, root: Path, lease_seconds: int = 60, database_url: str | None = None, log_level: str = "warning"
    ) -> None:
        self.root = root
        self.database_url = database_url  # None: SQLite in the data folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = root / "data"
        self.lease_seconds = lease_seconds
        self.log_level = log_level
        self.environment = {
            **os.environ,
            "AITBC_CONFIG": str(root / "profile.json"),
            "AITBC_URL": self.url,
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",  # the CLI's tables, wide enough that no test's words wrap
        }
        for name in ("AITBC_API_KEY", "AITBC_COORDINATOR_KEY_FILE"):
            self.environment.pop(name, None)
        self.server: subprocess.Popen[bytes] | None = None
        self.miners: list[subprocess.Popen[bytes]] = []
        self.miner_names: set[str] = set()
        self.client_key = ""
        self.admin_key = ""
        self.miner_key = ""
        self.running: list[RunningCli] = []

    # -- the coordinator ----------------------------------------------------------------------------

    @property
    def server_log(self) -> Path:
        return self.root / "serve.log"

    def start_server(self, *options: str) -> None:
        with self.server_log.open("ab") as log:
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
                    self.log_level,
                    *(["--database-url", self.database_url] if self.database_url else []),
                    *options,
                ],
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._healthy, START_TIMEOUT, interval=0.1, what="the coordinator to answer")
        if not self.profile_path.exists():  # the data folder had keys before serve's first start: make our own
            keys = {
                name: self.new_key(name, role) for name, role in (("api_key", "client"), ("admin_api_key", "admin"))
            }
            self.profile_path.write_text(json.dumps({"url": self.url, **keys}))  # the one-profile form, still read
        keys = self.own_profile() or self.profile()
        self.client_key, self.admin_key = keys["api_key"], keys["admin_api_key"]

    @property
    def profile_path(self) -> Path:
        """The CLI profile file the stack's commands use (`AITBC_CONFIG`): the stack's own, unless a test
        points several stacks at one."""
        return Path(self.environment["AITBC_CONFIG"])

    def own_profile(self) -> dict[str, Any] | None:
        """The profile `aitbc serve` wrote for this stack's data folder, if it wrote one."""
        file = load_profiles(self.profile_path)
        data_dir = str(self.data_dir.resolve())
        return next((values for values in file.profiles.values() if values.get("data_dir") == data_dir), None)

    def profile(self, name: str | None = None) -> dict[str, Any]:
        """A profile of the stack's profile file (its default without a name), as the CLI reads it."""
        file = load_profiles(self.profile_path)
        chosen = name or file.default_name()
        assert chosen is not None and chosen in file.profiles, (chosen, sorted(file.profiles))
        return file.profiles[chosen]

    def _healthy(self) -> bool:
        assert self.server is not None
        if self.server.poll() is not None:
            raise AssertionError("aitbc serve exited:\n" + self.server_log.read_text())
        return healthy(self.url)

    @property
    def banner(self) -> str:
        """What `aitbc serve` printed before it served (the first start's keys among it)."""
        text = self.server_log.read_text()
        return text[: text.index("Coordinator on")]

    def _offline(self, use: Callable[[Coordinator], Awaitable[T]]) -> T:
        """`use` the coordinator's services on the stack's database directly, as `aitbc admin … --data-dir`
        does: for when no coordinator serves it, or to skip a CLI start-up."""

        async def run() -> T:
            settings = Settings(data_dir=self.data_dir, database_url=self.database_url, run_reaper=False)
            coordinator = await open_coordinator(settings)
            try:
                return await use(coordinator)
            finally:
                await coordinator.close()

        return asyncio.run(run())

    def new_key(self, account: str, role: str) -> str:
        """An API key, made through the account service on the database (no CLI start-up each time)."""

        async def make(coordinator: Coordinator) -> str:
            return (await coordinator.accounts.create_key(account, Role(role))).secret

        return self._offline(make)

    def job_while_stopped(self, job_id: str) -> Job:
        """A job as the job service reads it (with the admin key) while no coordinator serves the database."""

        async def read(coordinator: Coordinator) -> Job:
            return await coordinator.jobs.get(await coordinator.accounts.authenticate(self.admin_key), job_id)

        return self._offline(read)

    def stop_server(self, signum: int = signal.SIGTERM) -> None:
        assert self.server is not None
        self.server.send_signal(signum)
        self.server.wait(timeout=20)
        self.server = None

    # -- miners -------------------------------------------------------------------------------------

    def make_miner_key(self) -> str:
        self.miner_key = self.new_key("miners", "miner")
        return self.miner_key

    def start_miner(self, name: str, *options: str) -> subprocess.Popen[bytes]:
        if not self.miner_key:
            self.make_miner_key()
        with (self.root / f"miner-{name}.log").open("ab") as log:
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

        for running in self.running:
            running.kill()

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

    def cli(
        self, *arguments: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        answer = subprocess.run(
            [*AITBC, *arguments],
            env={**self.environment, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and answer.returncode != 0:
            raise AssertionError(
                f"aitbc {' '.join(arguments)} exited {answer.returncode}:\n{answer.stdout}\n{answer.stderr}"
            )
        return answer

    def cli_running(self, *arguments: str, env: dict[str, str] | None = None) -> RunningCli:
        """A CLI command started and left running (`watch`, `logs --follow`); the test reads its lines as they
        come and waits for its end (`RunningCli`). The caller kills it if the test fails first."""
        running = RunningCli([*AITBC, *arguments], {**self.environment, **(env or {})})
        self.running.append(running)
        return running

    def json(self, *arguments: str, env: dict[str, str] | None = None) -> Any:
        """A CLI command's `--json` answer."""
        return json.loads(self.cli(*arguments, "--json", env=env).stdout)

    def submit(self, *options: str) -> str:
        """Submit with the CLI, as a user would."""
        return self.cli("client", "submit", *options).stdout.strip()

    def post_job(self, **body: Any) -> str:
        """Submit through the HTTP API (what the CLI does, without its start-up time)."""
        answer = httpx.post(f"{self.url}/v1/jobs", json=body, headers={"X-Api-Key": self.client_key}, timeout=10)
        assert answer.status_code in (200, 201), answer.text
        job_id: str = answer.json()["job_id"]
        return job_id

    def admin(self) -> httpx.Client:
        """An HTTP client with the admin key: admins are not rate-limited, and the client's own plan allows
        only so many requests a minute, so polls and reads go through this one."""
        return httpx.Client(base_url=self.url, headers={"X-Api-Key": self.admin_key}, timeout=10)

    def job(self, job_id: str) -> dict[str, Any]:
        """The status object, through the HTTP API (quicker than the CLI for polling)."""
        with self.admin() as http:
            answer = http.get(f"/v1/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def wait_status(self, job_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
        return wait_until(
            lambda: job if (job := self.job(job_id))["status"] in statuses else None,
            timeout,
            what=f"{job_id} to become {' or '.join(sorted(statuses))}",
        )

    def package(self, job_id: str) -> Package:
        """The result package the coordinator accepted for a job, read through the HTTP API."""
        with self.admin() as http:
            return read_package(http, job_id)

    def log_lines(self, job_id: str) -> list[str]:
        """The log lines the coordinator has of a job so far (what `aitbc client logs` shows)."""
        with self.admin() as http:
            answer = http.get(f"/v1/jobs/{job_id}/logs")
        assert answer.status_code == 200, answer.text
        return [line["line"] for line in answer.json()["lines"]]
