"""Our coordinator for the bench: a real `aitbc serve` process on SQLite (a fresh data folder) or PostgreSQL (a
fresh database per run), with many enterprise accounts holding credits.

The load is spread over many accounts so that the per-account plan limits (enterprise: 6,000 requests a
minute, 5,000 unfinished jobs) are not what the bench measures. Accounts, keys and grants are made through the
account and billing services (`aitbc.wiring.open_coordinator`), as `aitbc admin keys create` and `aitbc admin
credits grant` do, without a CLI start-up for each.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

from aitbc.domain.plans import Plan, Role
from aitbc.settings import Settings
from aitbc.wiring import open_coordinator

AITBC = str(Path(sys.executable).with_name("aitbc"))
POSTGRES_SERVER = os.environ.get("BENCH_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432")
GRANT = Decimal(10_000_000)  # AITBC per account: far more than any run's holds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def memory_mib(pid: int, field_name: str) -> float:
    """VmRSS (now) or VmHWM (peak) of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Account:
    name: str
    key: str
    account_id: str


@dataclass
class Ours:
    """One coordinator under test: its backend, its data, its accounts, and its process once started."""

    root: Path
    backend: str  # "sqlite", "sqlite-normal" (SQLite with synchronous=normal) or "postgresql"
    label: str = "bench"
    port: int = field(default_factory=free_port)
    clients: list[Account] = field(default_factory=list)
    miner_key: str = ""
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.data_dir = self.root / f"data-{self.label}-{self.backend}"
        self.database_name = f"aitbc_bench_{self.label}_{os.getpid()}"
        if self.backend == "postgresql":
            self._recreate_database()

    @property
    def database_url(self) -> str | None:
        return f"{POSTGRES_SERVER}/{self.database_name}" if self.backend == "postgresql" else None

    @property
    def sqlite_synchronous(self) -> str:
        """SQLite's synchronous: FULL (the default: each commit durable) unless the backend is sqlite-normal."""
        return "normal" if self.backend == "sqlite-normal" else "full"

    @property
    def database_options(self) -> list[str]:
        url = self.database_url
        synchronous = ["--sqlite-synchronous", "normal"] if self.backend == "sqlite-normal" else []
        return ["--data-dir", str(self.data_dir), *(["--database-url", url] if url else []), *synchronous]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def system(self) -> str:
        if self.backend == "sqlite-normal":
            return "aitbc (sqlite, synchronous=normal)"
        return f"aitbc ({self.backend})"

    def settings(self) -> Settings:
        return Settings(
            data_dir=self.data_dir,
            database_url=self.database_url,
            sqlite_synchronous=self.sqlite_synchronous,
            run_reaper=False,
        )

    def _recreate_database(self) -> None:
        import psycopg

        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{self.database_name}"')

    def drop(self) -> None:
        self.stop()
        if self.backend == "postgresql":
            import psycopg

            with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')

    def make_accounts(self, count: int) -> None:
        """`count` enterprise client accounts with credits, and one miner account."""

        async def make() -> None:
            coordinator = await open_coordinator(self.settings())
            try:
                for index in range(count):
                    name = f"bench-client-{index:03d}"
                    created = await coordinator.accounts.create_key(name, Role.CLIENT, Plan.ENTERPRISE)
                    await coordinator.billing.grant(name, GRANT, "bench")
                    self.clients.append(Account(name, created.secret, created.account.id))
                self.miner_key = (await coordinator.accounts.create_key("bench-farm", Role.MINER)).secret
            finally:
                await coordinator.close()

        asyncio.run(make())

    def start(self) -> None:
        log = (self.root / f"serve-{self.label}-{self.backend}.log").open("ab")
        self.process = subprocess.Popen(
            [AITBC, "serve", "--port", str(self.port), "--log-level", "warning", *self.database_options],
            env={**os.environ, "AITBC_CONFIG": str(self.root / "profile.json")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"aitbc serve exited {self.process.returncode}: see {log.name}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("aitbc serve did not answer within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def rss_mib(self) -> tuple[float, float]:
        """The coordinator's resident memory now and at its peak."""
        assert self.process is not None
        return memory_mib(self.process.pid, "VmRSS"), memory_mib(self.process.pid, "VmHWM")

    def serve_command(self) -> str:
        return f"aitbc serve --port {self.port} {' '.join(self.database_options)}"
