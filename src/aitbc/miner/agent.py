"""The miner agent: register, long-poll for jobs, run up to `max_jobs` at once, keep their leases alive,
and learn of a cancel within milliseconds.

Three loops run side by side:

- claims: a long poll for as many jobs as there are free slots (no busy polling); the claim also starts the
  jobs it takes (one call, not one more per job), and results ready together are completed in one call (see
  `CoordinatorClient.complete`);
- control: a held heartbeat naming every lease this miner holds, idle or busy; the coordinator answers it at
  once when one of those jobs is being cancelled (or its lease is gone), and otherwise after the heartbeat
  period it gave at register (5 s: a miner not heard from for the coordinator's lost window, 15 s, is lost and
  its jobs go back to the queue);
- each job's own run (`JobRun`), which reports progress and logs in batches and delivers its result.

SIGTERM (`request_stop`): stop claiming, let running jobs finish for `shutdown_grace_seconds`, hand the
rest back to the queue, try to deliver what is finished, exit. Undelivered results stay on disk and are
delivered at the next start; a job that was running when the miner died is handed back at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.concurrency import INTERRUPTED, unless
from aitbc.domain.errors import AitbcError, Forbidden, InvalidInput, NotFound, Unauthorized
from aitbc.domain.job import FailureReason, JobStatus
from aitbc.domain.manifest import public_key_text
from aitbc.miner.backoff import Backoff
from aitbc.miner.config import MinerConfig
from aitbc.miner.coordinator_client import CoordinatorClient
from aitbc.miner.delivery import Finish, deliver
from aitbc.miner.gpus import GpuSlots
from aitbc.miner.identity import load_or_create_key, private_folder, write_private
from aitbc.miner.job_run import ASSIGNMENT_FILE, JobRun, Phase
from aitbc.miner.runtimes.interface import Runtime, declared_schemas
from aitbc.miner.sandboxed_run import clear_leftovers
from aitbc.miner.stop import StopReason
from aitbc.protocol.miners import Assignment, GpuSpec, LeaseState, RegisterRequest, RegisterResponse

log = logging.getLogger(__name__)
T = TypeVar("T")
MINER_STATE_FILE = "miner.json"
PARENT_CHECK_SECONDS = 1.0
DELIVERY_SHUTDOWN_SECONDS = 10.0


class Agent:
    def __init__(
        self,
        config: MinerConfig,
        runtimes: dict[str, Runtime],
        client: CoordinatorClient | None = None,
    ) -> None:
        if not runtimes:
            raise ValueError("a miner needs at least one runtime")
        self.config = config
        self.runtimes = runtimes
        self.client = client or CoordinatorClient(config.url, config.api_key)
        self.registration: RegisterResponse | None = None
        self.jobs: dict[str, JobRun] = {}
        self.deliveries: dict[str, str] = {}  # job id → lease id, for results recovered from disk
        self._key: Ed25519PrivateKey | None = None
        self._stopping = asyncio.Event()
        self._leases_changed = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.gpu_slots = GpuSlots(len(config.gpus))

    # -- public -------------------------------------------------------------------------------------

    @property
    def miner_id(self) -> str:
        return self.client.miner_id

    def request_stop(self, immediately: bool = False) -> None:
        """Stop claiming; with `immediately` (a second signal), hand running jobs back at once."""
        if immediately or self._stopping.is_set():
            for run in list(self.jobs.values()):
                if run.phase is Phase.RUNNING:
                    run.stop.request(StopReason.SHUTDOWN)
        self._stopping.set()

    async def run(self) -> None:
        """Run until stopped (or, in drain mode, until no job is left); then shut down cleanly."""
        for folder in (self.config.work_dir, self.config.state_dir, self.config.jobs_dir):
            private_folder(folder)  # jobs run as other users or in sandboxes: none of them may enter these
        self._key = load_or_create_key(self.config.state_dir)
        # Whatever a previous run of this miner left running (it was killed) dies before any job is handed back.
        cleared = await asyncio.to_thread(clear_leftovers, self.config)
        if cleared:
            log.info("cleared %d job sandbox(es) left by a previous run", cleared)
        control: asyncio.Task[None] | None = None
        watchdog: asyncio.Task[None] | None = None
        try:
            if self.config.parent_pid is not None:
                watchdog = asyncio.create_task(self._watch_parent(self.config.parent_pid), name="parent")
            if await self._until_stopped(self._register()) is None:
                return
            await self._recover()
            control = asyncio.create_task(self._control_loop(), name="control")
            await self._claim_loop()
            await self._shut_down()
        finally:
            for task in (control, watchdog, *self._tasks):
                if task is not None and not task.done():
                    task.cancel()
            for task in (control, watchdog, *self._tasks):
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            for runtime in self.runtimes.values():
                await runtime.close()
            await self.client.close()

    # -- start-up -----------------------------------------------------------------------------------

    def _register_request(self) -> RegisterRequest:
        assert self._key is not None
        models = sorted({model for runtime in self.runtimes.values() for model in runtime.models()})
        return RegisterRequest(
            name=self.config.name,
            gpus=[GpuSpec(model=gpu.model, vram_gb=gpu.vram_gb) for gpu in self.config.gpus],
            runtimes=sorted(self.runtimes),
            models=models,
            max_concurrency=self.config.max_jobs,
            public_key=public_key_text(self._key),
            region=self.config.region,
            schemas={name: spec for name, runtime in self.runtimes.items() if (spec := declared_schemas(runtime))}
            or None,
        )

    async def _register(self) -> RegisterResponse:
        request = self._register_request()
        try:
            self.registration = await self.client.register(request)
        except InvalidInput as error:
            if request.schemas is None:
                raise
            # A coordinator from before runtime schemas refuses the field: this miner then takes any input.
            log.warning("the coordinator refused the runtimes' schemas (%s): registering without them", error)
            request = request.model_copy(update={"schemas": None})
            self.registration = await self.client.register(request)
        state = {"miner_id": self.registration.miner_id, "name": self.config.name, "url": self.config.url}
        write_private(self.config.state_dir / MINER_STATE_FILE, json.dumps(state, indent=2) + "\n")
        log.info(
            "registered as %s (%s; runtimes %s; models %s; %d GPU(s))",
            self.registration.miner_id,
            self.config.name,
            ", ".join(request.runtimes),
            ", ".join(request.models) or "any",
            len(request.gpus),
        )
        return self.registration

    async def _recover(self) -> None:
        """Deliver results a previous run left on disk; hand back jobs it was running when it died."""
        assert self._key is not None
        for job_dir in sorted(p for p in self.config.jobs_dir.iterdir() if p.is_dir()):
            finish = Finish.load(job_dir)
            if finish is not None:
                log.info("delivering the result of %s left by a previous run", finish.job_id)
                self.deliveries[finish.job_id] = finish.lease_id
                self._spawn(self._deliver_recovered(job_dir, finish))
                continue
            try:
                assignment = Assignment.model_validate_json((job_dir / ASSIGNMENT_FILE).read_text())
            except (OSError, ValueError):
                shutil.rmtree(job_dir, ignore_errors=True)
                continue
            log.info("handing back %s, interrupted by a previous run's end", assignment.job_id)
            handed_back = Finish(
                job_id=assignment.job_id,
                lease_id=assignment.lease_id,
                verb="fail",
                reason=FailureReason.MINER_ERROR.value,
                message=f"miner {self.config.name} restarted while running the job",
                retryable=True,
                with_package=False,
            )
            handed_back.save(job_dir)
            self.deliveries[assignment.job_id] = assignment.lease_id
            self._spawn(self._deliver_recovered(job_dir, handed_back))
        self._leases_changed.set()

    async def _deliver_recovered(self, job_dir: Path, finish: Finish) -> None:
        assert self._key is not None
        try:
            await deliver(self.client, self._key, job_dir, finish)
        finally:
            self.deliveries.pop(finish.job_id, None)
            self._leases_changed.set()

    # -- claims -------------------------------------------------------------------------------------

    def _running(self) -> int:
        return sum(1 for run in self.jobs.values() if run.phase is Phase.RUNNING)

    async def _until_stopped(self, work: Awaitable[T]) -> T | None:
        """Await `work` unless a stop comes first (then cancel it and return None)."""
        done = await unless(work, self._stopping.wait())
        return None if done is INTERRUPTED else done

    async def _claim_loop(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            free = self.config.max_jobs - self._running()
            if free <= 0:
                self._slot_freed.clear()
                await self._until_stopped(self._slot_freed.wait())
                continue
            wait = self.config.drain_wait_seconds if self.config.drain else self.config.claim_wait_seconds
            try:
                # The claim starts its jobs too: one call, not one more per job (a round trip and a commit less
                # between a submit and its job running).
                claimed = await self._until_stopped(self.client.claim(free, wait, start=True))
            except NotFound:
                await self._until_stopped(self._register())
                continue
            except (Unauthorized, Forbidden):
                raise  # the key was revoked or is not a miner key: retrying cannot help
            except AitbcError as error:
                delay = backoff.next_delay()
                log.warning("claim failed (%s); retrying in %.1f s", error.message, delay)
                await self._until_stopped(asyncio.sleep(delay))
                continue
            if claimed is None:
                break
            backoff.reset()
            for assignment in claimed:
                self._launch(assignment)
            if self.config.drain and not claimed:
                if not self.jobs and not self.deliveries:
                    log.info("drained: no job left for this miner")
                    return
                self._slot_freed.clear()
                await self._until_stopped(self._slot_freed.wait())

    def _launch(self, assignment: Assignment) -> None:
        assert self._key is not None
        gpus = self.gpu_slots.acquire(assignment.requirements.gpu_count) if self.config.gpus else ()
        run = JobRun(
            assignment,
            self.config.jobs_dir / assignment.job_id,
            self.client,
            self._key,
            self.runtimes.get(assignment.type),
            self.config.name,
            self.config.report_interval_seconds,
            "cuda" if gpus else "cpu",  # a job given no GPU sees none (its sandbox has no GPU device)
            on_phase=self._on_phase,
            gpus=gpus,
        )
        self.jobs[assignment.job_id] = run
        self._leases_changed.set()
        self._spawn(run.execute())

    def _on_phase(self, run: JobRun) -> None:
        if run.phase is not Phase.RUNNING and run.gpus:
            self.gpu_slots.release(run.gpus)
            run.gpus = ()
        if run.phase is Phase.DONE:
            self.jobs.pop(run.job_id, None)
            self._leases_changed.set()
        if run.phase is not Phase.RUNNING:
            self._slot_freed.set()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a job task failed", exc_info=task.exception())
        self._slot_freed.set()

    # -- control: heartbeats and instant cancels -----------------------------------------------------

    def _lease_ids(self) -> list[str]:
        return [run.lease_id for run in self.jobs.values()] + list(self.deliveries.values())

    async def _control_loop(self) -> None:
        assert self.registration is not None
        wait = float(self.registration.heartbeat_seconds)
        backoff = Backoff()
        while True:
            self._leases_changed.clear()
            try:
                states = await unless(self.client.heartbeat(self._lease_ids(), wait), self._leases_changed.wait())
            except NotFound:
                await self._register()
                continue
            except AitbcError as error:
                delay = backoff.next_delay()
                log.warning("heartbeat failed (%s); retrying in %.1f s", error.message, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._leases_changed.wait(), timeout=delay)
                continue
            if states is INTERRUPTED:  # the set of leases changed: ask again with the new set
                continue
            backoff.reset()
            self._apply(states)

    def _apply(self, states: list[LeaseState]) -> None:
        by_lease = {run.lease_id: run for run in self.jobs.values()}
        for state in states:
            run = by_lease.get(state.lease_id)
            if run is None or not state.cancel or run.phase is not Phase.RUNNING:
                continue
            if state.active and state.status is JobStatus.CANCELING:
                log.info("job %s is being cancelled: stopping it", run.job_id)
                run.stop.request(StopReason.CANCELED)
            else:
                log.warning("job %s: lease no longer active (%s): stopping it", run.job_id, state.status.value)
                run.stop.request(StopReason.LEASE_LOST)

    async def _watch_parent(self, parent_pid: int) -> None:
        while os.getppid() == parent_pid:
            await asyncio.sleep(PARENT_CHECK_SECONDS)
        log.warning("the process that started this miner is gone: stopping")
        self.request_stop()

    # -- shutdown -----------------------------------------------------------------------------------

    async def _shut_down(self) -> None:
        running = [run for run in self.jobs.values() if run.phase is Phase.RUNNING]
        if running:
            log.info("waiting up to %.0f s for %d running job(s)", self.config.shutdown_grace_seconds, len(running))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_delivering(), timeout=self.config.shutdown_grace_seconds)
            for run in self.jobs.values():
                if run.phase is Phase.RUNNING:
                    run.stop.request(StopReason.SHUTDOWN)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=DELIVERY_SHUTDOWN_SECONDS)
            if pending:
                log.warning("%d result(s) not delivered yet: kept on disk for the next start", len(pending))

    async def _all_delivering(self) -> None:
        while any(run.phase is Phase.RUNNING for run in self.jobs.values()):
            self._slot_freed.clear()
            await self._slot_freed.wait()
