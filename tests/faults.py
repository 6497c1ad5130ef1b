"""A fault-injection loop over real processes, shared by `bench/fault_loop.py` and the slow e2e test.

N `command` jobs run on real `aitbc miner run --allow-command` processes against a real `aitbc serve`,
while the coordinator and the miners are killed with SIGKILL and restarted at random moments (seeded).
At the end it audits the database directly, not through the API it just broke:

- every job is terminal, and each submitted job exists once (submits are retried with an Idempotency-Key);
- no job ended twice: one terminal status event, one hold and one release per job;
- the ledger balances: every account's running balance equals the sum of its ledger, and every finished
  job's hold, release, payout and fee net to zero (what the client paid is what the miner and the platform
  got), with the job's cost equal to what its hold kept;
- every completed job has a stored result;
- no job process outlives its job: each script runs `sleep` under a name unique to this run and job
  (`exec -a aitbc-fault-<run>-<index>`), visible in the host's /proc whether or not the job runs in its own
  PID namespace, and /proc is scanned for that name once every job is terminal.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.engine import make_url

from aitbc.domain.job import TERMINAL_STATUSES
from aitbc.storage.sql.tables import accounts, job_events, job_results, jobs, ledger_entries
from tests.support.processes import process_gone
from tests.support.stack import Stack
from tests.support.waiting import wait_until

TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)
RETRY_SECONDS = 60.0  # how long a submit or cancel is retried while the coordinator is down
SETTLE_SECONDS = 120.0  # how long every job gets to become terminal once the faults stop


@dataclass
class Fault:
    at: float  # seconds since the run started
    target: str  # "coordinator" or a miner's name
    down_seconds: float

    def __str__(self) -> str:
        return f"{self.at:6.1f} s  SIGKILL {self.target}, back after {self.down_seconds:.1f} s"


@dataclass
class Report:
    run: str
    backend: str
    jobs: int
    statuses: Counter[str] = field(default_factory=Counter)
    faults: list[Fault] = field(default_factory=list)
    planned_faults: int = 0
    cancels: int = 0
    retried_calls: int = 0
    survivors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # anything lost, doubled or unbalanced
    seconds: float = 0.0
    faults_over_at: float = 0.0  # when the last fault's restart was done and the settling began

    def lines(self) -> list[str]:
        statuses = ", ".join(f"{name} {count}" for name, count in sorted(self.statuses.items()))
        kinds = Counter("coordinator" if f.target == "coordinator" else "miner" for f in self.faults)
        return [
            f"fault loop {self.run} on {self.backend}: {self.jobs} jobs in {self.seconds:.0f} s ({statuses}); "
            f"faults over at {self.faults_over_at:.0f} s",
            f"faults injected: {len(self.faults)} of {self.planned_faults} planned (no kill when every miner is "
            f"already down): {kinds['coordinator']} coordinator, {kinds['miner']} miner; "
            f"cancels: {self.cancels}; calls retried while the coordinator was down: {self.retried_calls}",
            *(f"  {fault}" for fault in self.faults),
            f"surviving job processes: {len(self.survivors)}",
            *(f"  {survivor}" for survivor in self.survivors),
            f"lost, doubled or unbalanced: {len(self.problems)}",
            *(f"  {problem}" for problem in self.problems),
        ]


def _job_index(command_line: str) -> int:
    """The job's index in a process named `aitbc-fault-<seed>-<hex>-<index>` (-1 if none)."""
    for word in command_line.split():
        if word.startswith("aitbc-fault-") and word.rsplit("-", 1)[-1].isdigit():
            return int(word.rsplit("-", 1)[-1])
    return -1


class FaultLoop:
    def __init__(
        self,
        root: Path,
        jobs: int,
        seed: int,
        database_url: str | None = None,
        miners: int = 2,
        faults: int = 4,
        cancels: int = 2,
        job_seconds: float = 1.5,
        lease_seconds: int = 3,
    ) -> None:
        self.random = random.Random(seed)
        self.run = f"{seed}-{secrets.token_hex(3)}"
        self.jobs, self.miner_count, self.fault_count, self.cancel_count = jobs, miners, faults, cancels
        self.job_seconds = job_seconds
        root.mkdir(parents=True, exist_ok=True)
        self.stack = Stack(root, lease_seconds=lease_seconds, database_url=database_url)
        self.database_url = database_url or f"sqlite:///{(self.stack.data_dir / 'aitbc.db').resolve()}"
        backend = make_url(self.database_url).get_backend_name()
        self.report = Report(self.run, backend, jobs, planned_faults=faults)
        self.miners: dict[str, subprocess.Popen[bytes]] = {}
        self.client_key = ""
        self.account_id = ""
        self.job_ids: dict[int, str] = {}
        self._restart: threading.Thread | None = None
        self._restarts: list[tuple[float, str]] = []

    # -- the run ------------------------------------------------------------------------------------

    def run_all(self) -> Report:
        started = time.monotonic()
        watching = threading.Event()
        watcher = threading.Thread(target=self._watch_for_survivors, args=(watching,), name="survivor-watch")
        try:
            self._start()
            watcher.start()
            self._play(self._plan(), time.monotonic())
            self.report.faults_over_at = time.monotonic() - started
            self._settle()
            watching.set()
            watcher.join()
            self.report.survivors += [f"pid {pid} after the run: {line}" for pid, line in self._survivors()]
            self.report.problems = self._audit()
        finally:
            watching.set()
            if watcher.is_alive():
                watcher.join()
            self._coordinator_back()
            self.stack.close()
            for pid, _ in self._survivors():  # leave nothing of ours running, whatever was found
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.report.seconds = time.monotonic() - started
        return self.report

    def _watch_for_survivors(self, stop: threading.Event) -> None:
        """During the run: a process of a job that the database already has as terminal outlived its job
        (a killed miner's orphan whose job was requeued and then cancelled, or failed as miner_lost)."""
        seen: set[int] = set()
        engine = self._engine()
        try:
            while not stop.wait(0.25):
                alive = {pid: line for pid, line in self._survivors() if pid not in seen}
                by_job = {self.job_ids.get(_job_index(line)): (pid, line) for pid, line in alive.items()}
                by_job.pop(None, None)
                if not by_job:
                    continue
                with engine.connect() as connection:
                    ended = connection.execute(
                        select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(list(by_job)), jobs.c.status.in_(TERMINAL))
                    ).all()
                for job_id, status in ended:
                    pid, line = by_job[job_id]
                    if not process_gone(pid):
                        seen.add(pid)
                        self.report.survivors.append(f"pid {pid} alive while {job_id} was {status}: {line}")
        finally:
            engine.dispose()

    def _start(self) -> None:
        self.stack.start_server()
        admin = {"X-Api-Key": self.stack.admin_key}
        made = httpx.post(
            f"{self.stack.url}/v1/admin/keys",
            json={"name": f"fault-{self.run}", "role": "client", "plan": "enterprise"},
            headers=admin,
            timeout=10,
        )
        made.raise_for_status()
        self.client_key, self.account_id = made.json()["api_key"], made.json()["account_id"]
        granted = httpx.post(
            f"{self.stack.url}/v1/admin/credits",
            json={"account": f"fault-{self.run}", "amount": "100000"},
            headers=admin,
            timeout=10,
        )
        granted.raise_for_status()
        for index in range(self.miner_count):
            self._start_miner(f"fault-miner-{index}")

    def _start_miner(self, name: str) -> None:
        self.miners[name] = self.stack.start_miner(
            name, "--allow-command", "--runtimes", "command", "--claim-wait", "2"
        )

    def _plan(self) -> list[tuple[float, str, Any]]:
        """(when, what, which): submits spread over the run, faults in its middle, cancels after submits."""
        span = max(6.0, self.jobs * self.job_seconds / self.miner_count)
        plan: list[tuple[float, str, Any]] = [
            (self.random.uniform(0, span * 0.7), "submit", index) for index in range(self.jobs)
        ]
        names = sorted(self.miners)
        for number in range(self.fault_count):
            # The first two faults are one of each kind, so even a short run exercises both.
            kind = ["coordinator", "miner"][number] if number < 2 else self.random.choice(["coordinator", "miner"])
            target = "coordinator" if kind == "coordinator" else self.random.choice(names)
            plan.append((self.random.uniform(span * 0.1, span * 0.9), "kill", target))
        submits = sorted(plan)
        for index in self.random.sample(range(self.jobs), min(self.cancel_count, self.jobs)):
            submitted_at = next(at for at, what, which in submits if what == "submit" and which == index)
            plan.append((submitted_at + self.random.uniform(0.3, 3.0), "cancel", index))
        return sorted(plan, key=lambda step: step[0])

    def _play(self, plan: list[tuple[float, str, Any]], started: float) -> None:
        """Each step runs its planned gap after the one before, so a step that waits (a submit retried while
        the coordinator is down) delays the rest instead of bunching them up. Killed miners come back on
        their own clock."""
        self._restarts: list[tuple[float, str]] = []  # (monotonic time due, miner)
        previous = 0.0
        for at, what, which in plan:
            self._pause(at - previous)
            previous = at
            if what == "submit":
                self._submit(which)
            elif what == "cancel":
                self._cancel(which)
            elif which == "coordinator":
                self._kill_coordinator(started)
            else:
                self._kill_miner(which, started)
        while self._restarts:
            self._pause(min(self._restarts)[0] - time.monotonic())
        self._coordinator_back()

    def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, restarting any killed miner whose time has come meanwhile."""
        until = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            for due in [restart for restart in self._restarts if restart[0] <= now]:
                self._restarts.remove(due)
                self._start_miner(due[1])
            if now >= until:
                return
            time.sleep(min([until, *(due for due, _ in self._restarts)]) - now)

    def _kill_miner(self, which: str, started: float) -> None:
        alive = sorted(name for name, process in self.miners.items() if process.poll() is None)
        if not alive:
            return  # every miner is already down
        name = which if which in alive else self.random.choice(alive)
        fault = Fault(time.monotonic() - started, name, self.random.uniform(0.2, 3.0))
        self.miners[name].send_signal(signal.SIGKILL)
        self.miners[name].wait(timeout=10)
        self.report.faults.append(fault)
        self._restarts.append((time.monotonic() + fault.down_seconds, name))

    def _kill_coordinator(self, started: float) -> None:
        """SIGKILL the coordinator and start it again after a while, in a thread: submits and cancels go on
        meanwhile and are retried until it answers, as a client's would be."""
        self._coordinator_back()
        fault = Fault(time.monotonic() - started, "coordinator", self.random.uniform(0.2, 1.5))
        self.stack.stop_server(signal.SIGKILL)
        self.report.faults.append(fault)

        def restart() -> None:
            time.sleep(fault.down_seconds)
            self.stack.start_server()

        self._restart = threading.Thread(target=restart, name="coordinator-restart")
        self._restart.start()

    def _coordinator_back(self) -> None:
        if self._restart is not None:
            self._restart.join()
            self._restart = None

    def _script(self, index: int) -> str:
        return (
            "echo AITBC_PROGRESS=10\n"
            f"(exec -a aitbc-fault-{self.run}-{index} sleep {self.job_seconds})\n"
            f'echo "job {index} done" > "$AITBC_RESULT_FILE"\n'
        )

    def _submit(self, index: int) -> None:
        body = {"type": "command", "input": self._script(index), "timeout_seconds": 60}
        headers = {"X-Api-Key": self.client_key, "Idempotency-Key": f"fault-{self.run}-{index}"}
        answer = self._call(lambda: httpx.post(f"{self.stack.url}/v1/jobs", json=body, headers=headers, timeout=10))
        if answer.status_code not in (200, 201):
            self.report.problems.append(f"submit of job {index} answered {answer.status_code}: {answer.text}")
            return
        self.job_ids[index] = answer.json()["job_id"]

    def _cancel(self, index: int) -> None:
        job_id = self.job_ids.get(index)
        if job_id is None:
            return
        headers = {"X-Api-Key": self.client_key}
        url = f"{self.stack.url}/v1/jobs/{job_id}/cancel"
        answer = self._call(lambda: httpx.post(url, headers=headers, timeout=10))
        self.report.cancels += 1
        if answer.status_code >= 500:
            self.report.problems.append(f"cancel of {job_id} answered {answer.status_code}: {answer.text}")

    def _call(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        """A call retried while the coordinator is down (or was killed before it answered)."""
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                return send()
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                self.report.retried_calls += 1
                time.sleep(0.2)

    def _settle(self) -> None:
        """Faults over: every killed miner is back; wait for every job to become terminal."""
        for name, process in self.miners.items():
            if process.poll() is not None:
                self._start_miner(name)
        engine = self._engine()
        try:
            with engine.connect() as connection:

                def open_jobs() -> int:
                    query = select(func.count()).where(jobs.c.account_id == self.account_id)
                    return int(connection.execute(query.where(jobs.c.status.not_in(TERMINAL))).scalar_one())

                with contextlib.suppress(AssertionError):  # the audit names each job left open
                    wait_until(lambda: open_jobs() == 0, SETTLE_SECONDS, interval=0.3, what="every job terminal")
                connection.rollback()
        finally:
            engine.dispose()

    # -- the audit ----------------------------------------------------------------------------------

    def _survivors(self) -> list[tuple[int, str]]:
        marker = f"aitbc-fault-{self.run}-".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command_line = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in command_line and not process_gone(int(entry.name)):
                found.append((int(entry.name), command_line.replace(b"\0", b" ").decode(errors="replace").strip()))
        return found

    def _engine(self) -> Engine:
        url = make_url(self.database_url)
        if url.get_backend_name() == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return create_engine(url)

    def _audit(self) -> list[str]:
        problems = list(self.report.problems)
        engine = self._engine()
        try:
            with engine.connect() as connection:
                problems += self._audit_jobs(connection)
                problems += self._audit_ledger(connection)
        finally:
            engine.dispose()
        return problems

    def _audit_jobs(self, connection: Any) -> list[str]:
        problems = []
        rows = connection.execute(
            select(jobs.c.id, jobs.c.status, jobs.c.failure_reason, jobs.c.idempotency_key).where(
                jobs.c.account_id == self.account_id
            )
        ).all()
        stored = {row.id: row for row in rows}
        for row in rows:
            self.report.statuses[row.status + (f"/{row.failure_reason}" if row.failure_reason else "")] += 1
        missing = sorted(set(range(self.jobs)) - set(self.job_ids))
        if missing:
            problems.append(f"never submitted (the coordinator refused them): jobs {missing}")
        lost = sorted(set(self.job_ids.values()) - set(stored))
        if lost:
            problems.append(f"submitted but not stored: {lost}")
        keys = Counter(row.idempotency_key for row in rows)
        problems += [f"{count} jobs for one submit ({key})" for key, count in keys.items() if count > 1]
        problems += [f"{row.id} left {row.status}" for row in rows if row.status not in TERMINAL]
        endings = dict(
            connection.execute(
                select(job_events.c.job_id, func.count())
                .where(job_events.c.account_id == self.account_id, job_events.c.kind == "status")
                .where(job_events.c.status.in_(TERMINAL))
                .group_by(job_events.c.job_id)
            ).all()
        )
        for job_id, row in stored.items():
            if row.status in TERMINAL and endings.get(job_id, 0) != 1:
                problems.append(f"{job_id} ended {endings.get(job_id, 0)} times (terminal status events)")
        with_result = set(
            connection.execute(select(job_results.c.job_id).where(job_results.c.job_id.in_(list(stored)))).scalars()
        )
        problems += [
            f"{job_id} completed without a stored result"
            for job_id, row in stored.items()
            if row.status == "completed" and job_id not in with_result
        ]
        return problems

    def _audit_ledger(self, connection: Any) -> list[str]:
        problems = []
        running = dict(connection.execute(select(accounts.c.id, accounts.c.balance_units)).all())
        summed = dict(
            connection.execute(
                select(ledger_entries.c.account_id, func.sum(ledger_entries.c.amount_units)).group_by(
                    ledger_entries.c.account_id
                )
            ).all()
        )
        for account_id, balance in running.items():
            if int(balance) != int(summed.get(account_id, 0)):
                problems.append(f"account {account_id}: balance {balance} but its ledger sums to {summed[account_id]}")
        ours = select(jobs.c.id).where(jobs.c.account_id == self.account_id)
        moves: dict[str, dict[str, list[int]]] = {}
        for job_id, kind, amount in connection.execute(
            select(ledger_entries.c.job_id, ledger_entries.c.kind, ledger_entries.c.amount_units).where(
                ledger_entries.c.job_id.in_(ours)
            )
        ).all():
            moves.setdefault(job_id, {}).setdefault(kind, []).append(int(amount))
        for job_id, status, cost in connection.execute(
            select(jobs.c.id, jobs.c.status, jobs.c.cost_units).where(jobs.c.account_id == self.account_id)
        ).all():
            kinds = moves.get(job_id, {})
            if len(kinds.get("hold", [])) != 1:
                problems.append(f"{job_id}: {len(kinds.get('hold', []))} holds")
            if status not in TERMINAL:
                continue
            if len(kinds.get("release", [])) != 1:
                problems.append(f"{job_id} ({status}): {len(kinds.get('release', []))} releases")
            net = sum(sum(amounts) for amounts in kinds.values())
            if net != 0:
                problems.append(f"{job_id} ({status}): hold, release, payout and fee net to {net}, not 0")
            kept = -(sum(kinds.get("hold", [])) + sum(kinds.get("release", [])))
            if cost is not None and int(cost) != kept:
                problems.append(f"{job_id} ({status}): cost {cost} but the hold kept {kept}")
        return problems
