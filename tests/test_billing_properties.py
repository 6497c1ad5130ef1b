"""Property test: random sequences of submits, claims, progress, completions, failures, cancels and lost
miners never create or lose money, never overdraw an account and never settle a job twice."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from aitbc.domain.clock import ManualClock
from aitbc.domain.errors import AitbcError
from aitbc.domain.job import JobStatus
from aitbc.domain.plans import Role
from aitbc.protocol.miners import BatchCompleteItem, FailRequest, FinishRequest, ProgressRequest
from aitbc.settings import Settings
from aitbc.storage.interfaces import JobFilter
from aitbc.wiring import Coordinator, open_coordinator
from tests.helpers import job_request, principal, register_miner

T = TypeVar("T")
GPU = [None, "a100", "v100", "rtx3090", "rtx4090"]


class Marketplace(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.coordinator: Coordinator = self.run(
            open_coordinator(Settings(data_dir=Path(self.folder.name), run_reaper=False), self.clock)
        )
        self.clients = [self.run(principal(self.coordinator, name, Role.CLIENT)) for name in ("alice", "bob")]
        self.owner = self.run(principal(self.coordinator, "farm", Role.MINER))
        gpus = [
            {"model": "A100", "vram_gb": 80},
            {"model": "V100", "vram_gb": 32},
            {"model": "RTX 3090", "vram_gb": 24},
            {"model": "NVIDIA GeForce RTX 4090", "vram_gb": 24},
        ]
        self.miners = [
            self.run(register_miner(self.coordinator, self.owner, f"m{i}", gpus=[g])) for i, g in enumerate(gpus)
        ]
        self.leases: dict[str, tuple[str, str]] = {}  # job id → (miner, lease) as the miner believes

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        self.run(self.coordinator.close())
        self.loop.close()
        self.folder.cleanup()

    @rule(
        client=st.integers(0, 1),
        gpu=st.sampled_from(GPU),
        priority=st.sampled_from(["low", "normal", "high", "urgent"]),
        timeout=st.integers(1, 7200),
    )
    def submit(self, client: int, gpu: str | None, priority: str, timeout: int) -> None:
        request = job_request(
            requirements={"gpu_type": gpu}, priority=priority, timeout_seconds=timeout, queue_timeout_seconds=86400
        )
        self.clock.advance(0.001)  # no two jobs share a timestamp, so the claim order does not hang on random ids
        try:
            self.run(self.coordinator.jobs.submit(self.clients[client], request))
        except AitbcError as error:
            assert error.status_code in (402, 429)

    @rule(client=st.integers(0, 1), amount=st.integers(1, 3))
    def grant(self, client: int, amount: int) -> None:
        self.run(self.coordinator.billing.grant(self.clients[client].account.name, Decimal(amount) / 10))

    @rule(miner=st.integers(0, 3), start=st.sampled_from(["no", "after", "with the claim"]), run_for=st.floats(0, 100))
    def claim(self, miner: int, start: str, run_for: float) -> None:
        together = start == "with the claim"
        claimed = self.run(self.coordinator.claiming.claim(self.owner, self.miners[miner], 2, 0, start=together))
        for assignment in claimed:
            self.leases[assignment.job_id] = (self.miners[miner], assignment.lease_id)
            if start == "after":
                self.run(
                    self.coordinator.running.start(
                        self.owner, self.miners[miner], assignment.job_id, assignment.lease_id
                    )
                )
        self.clock.advance(run_for)

    @precondition(lambda self: self.leases)
    @rule(
        data=st.data(),
        action=st.sampled_from(["start", "progress", "complete", "fail", "retryable", "cancel"]),
        seconds=st.floats(0, 50),
    )
    def act(self, data: st.DataObject, action: str, seconds: float) -> None:
        job_id = data.draw(st.sampled_from(list(self.leases)))  # in claim order: the same draw, the same job
        miner, lease = self.leases[job_id]
        self.clock.advance(seconds)
        coordinator = self.coordinator
        try:
            if action == "start":
                self.run(coordinator.running.start(self.owner, miner, job_id, lease))
            elif action == "progress":
                self.run(
                    coordinator.running.progress(
                        self.owner, miner, job_id, ProgressRequest(lease_id=lease, progress=50)
                    )
                )
            elif action == "complete":
                self.run(coordinator.finishing.complete(self.owner, miner, job_id, FinishRequest(lease_id=lease)))
            elif action in ("fail", "retryable"):
                request = FailRequest(lease_id=lease, reason="runtime_error", retryable=action == "retryable")
                self.run(coordinator.finishing.fail(self.owner, miner, job_id, request))
            else:
                job = self.run(self.coordinator.job_store.get_job(job_id))
                assert job is not None
                client = next(c for c in self.clients if c.account.id == job.account_id)
                self.run(self.coordinator.jobs.cancel(client, job_id))
        except AitbcError as error:
            # The lease moved on: refused, nothing changed. A job now held by another miner (or by none) is
            # not this miner's any more, so it is a 404 like any other miner's job; its own job is a 409.
            current = self.run(self.coordinator.job_store.get_job(job_id))
            assert current is not None
            assert error.status_code == (409 if current.miner_id == miner else 404), (error, current)

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), seconds=st.floats(0, 50))
    def complete_several(self, data: st.DataObject, seconds: float) -> None:
        """One miner's batch complete of some of the jobs it believes it holds (stale leases among them)."""
        miner = data.draw(st.sampled_from(sorted({m for m, _ in self.leases.values()})))
        mine = [job_id for job_id, (m, _) in self.leases.items() if m == miner]
        chosen = data.draw(st.lists(st.sampled_from(mine), min_size=1, max_size=4, unique=True))
        self.clock.advance(seconds)
        items = [BatchCompleteItem(job_id=job_id, lease_id=self.leases[job_id][1]) for job_id in chosen]
        for result in self.run(self.coordinator.finishing.complete_many(self.owner, miner, items)):
            if result.error is not None:
                current = self.run(self.coordinator.job_store.get_job(result.job_id))
                assert current is not None
                assert result.error.status == (409 if current.miner_id == miner else 404), (result, current)

    @rule(client=st.integers(0, 1))
    def cancel_something(self, client: int) -> None:
        page = self.run(self.coordinator.jobs.list(self.clients[client], [JobStatus.PENDING], None, None, 1, None))
        for job in page.jobs:
            self.run(self.coordinator.jobs.cancel(self.clients[client], job.id))

    @rule(seconds=st.sampled_from([5, 61, 3600, 90000]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.run(self.coordinator.reaper.run_once())

    @invariant()
    def money_is_conserved_and_settled_once(self) -> None:
        coordinator = self.coordinator
        totals = self.run(coordinator.ledger.totals_by_kind())
        jobs = self.run(coordinator.job_store.list_jobs(JobFilter(), 1000, None)).jobs
        held_now = sum(j.max_cost for j in jobs if not j.is_terminal)
        settled = [j for j in jobs if j.is_terminal]
        hold = -Decimal(totals.get("hold", 0))
        release = Decimal(totals.get("release", 0))
        payout = Decimal(totals.get("payout", 0))
        fee = Decimal(totals.get("fee", 0))
        unit = Decimal("1e-9")
        # Client debits = miner credits + fees + released holds (+ what unfinished jobs still hold).
        assert hold * unit == (payout + fee + release) * unit + held_now
        assert sum(j.cost or 0 for j in settled) * 10**9 == payout + fee
        for job in settled:
            assert job.cost is not None and 0 <= job.cost <= job.max_cost
        for client in self.clients:
            balance = self.run(coordinator.billing.balance(client))
            assert balance.available >= 0
            running = self.run(coordinator.ledger.balance_units(client.account.id))
            assert running == self.run(coordinator.ledger.summed_balance_units(client.account.id))
        entries = self.run(coordinator.ledger.entries(None, None, None, 100000, 0))
        releases = [e.job_id for e in entries if e.kind == "release"]
        assert len(releases) == len(set(releases)) == len(settled)


def test_the_ledger_always_balances() -> None:
    run_state_machine_as_test(
        Marketplace,
        settings=settings(
            max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
