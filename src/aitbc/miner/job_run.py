"""One claimed job on this miner, from `start` to its result being accepted:

    start → fetch input → runtime.run (progress and logs batched) → package → finish.json → deliver

It stops early when the coordinator says the job is being cancelled (partial package, confirmed with
`fail`), when its timeout passes (`fail` / timeout), when its lease is lost (nothing is sent: the job moved
on), or when the miner shuts down (the job is handed back to the queue with a retryable `fail`).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
import shutil
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.errors import AitbcError, Conflict, NotFound
from aitbc.domain.job import LEASED_STATUSES, STDERR_TAIL_HEADING, FailureReason, JobStatus
from aitbc.miner.coordinator_client import CoordinatorClient
from aitbc.miner.delivery import PACKAGE_FOLDER, Finish, deliver
from aitbc.miner.identity import private_folder, write_private
from aitbc.miner.package import PackageLayout
from aitbc.miner.reporter import JobReporter
from aitbc.miner.runtimes.interface import JobContext, JobFailed, Runtime, RuntimeResult
from aitbc.miner.stop import StopReason, StopSignal
from aitbc.miner.timings import JobTimings
from aitbc.protocol.miners import Assignment, JobDirective

log = logging.getLogger(__name__)
ASSIGNMENT_FILE = "assignment.json"
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._\-]")


class Phase(enum.StrEnum):
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"


def with_stderr_tail(message: str, tail: list[str]) -> str:
    """A failure's message and the last lines of the job's stderr, so the job's status says what went wrong
    (the miner's own `[aitbc] <message>` line, which only repeats it, left out)."""
    lines = [line for line in tail if line != f"[aitbc] {message}"]
    if not lines:
        return message
    return f"{message}\n{STDERR_TAIL_HEADING}\n" + "\n".join(lines)


def input_file_name(name: str) -> str:
    cleaned = UNSAFE_NAME.sub("_", name.rsplit("/", 1)[-1]).lstrip(".")
    return cleaned or "input"


class JobRun:
    def __init__(
        self,
        assignment: Assignment,
        job_dir: Path,
        client: CoordinatorClient,
        key: Ed25519PrivateKey,
        runtime: Runtime | None,
        miner_name: str,
        report_interval_seconds: float,
        device: str,
        on_phase: Callable[[JobRun], None],
        gpus: tuple[int, ...] = (),
    ) -> None:
        self.assignment = assignment
        self.gpus = gpus  # the host indices of the GPUs this job holds while it runs
        self.job_dir = job_dir
        self.stop = StopSignal()
        self.phase = Phase.RUNNING
        self._client = client
        self._key = key
        self._runtime = runtime
        self._miner_name = miner_name
        self._interval = report_interval_seconds
        self._device = device
        self._on_phase = on_phase
        self._timings: JobTimings | None = None  # from its start: when its work ran (billed), when it stopped

    @property
    def job_id(self) -> str:
        return self.assignment.job_id

    @property
    def lease_id(self) -> str:
        return self.assignment.lease_id

    def on_directive(self, directive: JobDirective) -> None:
        """The coordinator's answer to any call about this job: carry on, or stop."""
        if not directive.cancel:
            return
        if directive.status is JobStatus.CANCELING:
            self.stop.request(StopReason.CANCELED)
        elif directive.status not in LEASED_STATUSES:
            self.stop.request(StopReason.LEASE_LOST)

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self._on_phase(self)

    # -- the whole run ------------------------------------------------------------------------------

    async def execute(self) -> None:
        try:
            finish = await self._run()
            if finish is None:
                shutil.rmtree(self.job_dir, ignore_errors=True)
                return
            finish.save(self.job_dir)
            self._set_phase(Phase.DELIVERING)
            directive = await deliver(self._client, self._key, self.job_dir, finish)
            if directive is not None:
                log.info("job %s delivered: %s", self.job_id, directive.status.value)
        finally:
            self._set_phase(Phase.DONE)

    def _prepare(self) -> tuple[Path, PackageLayout]:
        shutil.rmtree(self.job_dir, ignore_errors=True)  # a job requeued to us again starts afresh
        work_dir = private_folder(self.job_dir / "work")
        self.job_dir.chmod(0o700)
        write_private(self.job_dir / ASSIGNMENT_FILE, self.assignment.model_dump_json(indent=2))
        layout = PackageLayout(self.job_dir / PACKAGE_FOLDER)
        layout.create()
        return work_dir, layout

    async def _run(self) -> Finish | None:
        work_dir, layout = self._prepare()
        if self.assignment.status is not JobStatus.RUNNING:  # not started by its claim already
            try:
                self.on_directive(await self._client.start(self.job_id, self.lease_id))
            except (Conflict, NotFound) as error:
                log.warning("job %s: lease lost before it started (%s)", self.job_id, error.message)
                return None
        self._timings = timings = JobTimings()
        log.info("job %s (%s) started, attempt %d", self.job_id, self.assignment.type, self.assignment.attempt)
        reporter = JobReporter(
            self._client,
            self.job_id,
            self.lease_id,
            layout,
            on_directive=self.on_directive,
            on_lease_lost=lambda: self.stop.request(StopReason.LEASE_LOST),
            interval_seconds=self._interval,
        )
        deadline = time.monotonic() + self.assignment.timeout_seconds
        timer = asyncio.get_running_loop().call_later(
            self.assignment.timeout_seconds, self.stop.request, StopReason.TIMEOUT
        )
        reporter.start()
        try:
            result = await self._run_runtime(work_dir, layout, reporter, deadline, timings)
        finally:
            timings.end()  # billed to here, not to delivery
            timer.cancel()
            await reporter.close()
        return self._finish(layout, result)

    async def _run_runtime(
        self, work_dir: Path, layout: PackageLayout, reporter: JobReporter, deadline: float, timings: JobTimings
    ) -> RuntimeResult:
        if self._runtime is None:
            return RuntimeResult(
                exit_code=None,
                failure=FailureReason.MINER_ERROR,
                message=f"this miner has no runtime for job type '{self.assignment.type}'",
            )
        try:
            input_path = await self._fetch_input(work_dir)
            context = JobContext(
                assignment=self.assignment,
                work_dir=work_dir,
                package=layout,
                reporter=reporter,
                stop=self.stop,
                deadline=deadline,
                input_path=input_path,
                device=self._device,
                gpus=self.gpus,
                timings=timings,
            )
            return await self._runtime.run(context)
        except JobFailed as error:
            reporter.line("stderr", f"[aitbc] {error.message}")
            return RuntimeResult(exit_code=None, failure=error.reason, message=error.message)
        except AitbcError as error:
            reporter.line("stderr", f"[aitbc] {error.message}")
            return RuntimeResult(exit_code=None, failure=FailureReason.MINER_ERROR, message=error.message)
        except Exception as error:
            log.exception("runtime %s crashed on job %s", self.assignment.type, self.job_id)
            for line in traceback.format_exc().splitlines():
                reporter.line("stderr", line)
            return RuntimeResult(
                exit_code=None,
                failure=FailureReason.RUNTIME_ERROR,
                message=f"the {self.assignment.type} runtime failed: {error.__class__.__name__}: {error}",
            )

    async def _fetch_input(self, work_dir: Path) -> Path | None:
        reference = self.assignment.input_file
        if reference is None:
            return None
        target = work_dir / input_file_name(reference.name)
        await self._client.download_input(self.job_id, self.lease_id, target, reference.sha256)
        return target

    # -- the outcome --------------------------------------------------------------------------------

    def _finish(self, layout: PackageLayout, result: RuntimeResult) -> Finish | None:
        reason = self.stop.reason
        if reason is StopReason.LEASE_LOST:
            log.warning("job %s: lease lost; its work is dropped", self.job_id)
            return None
        if reason is StopReason.SHUTDOWN:
            log.info("job %s: handed back to the queue (miner shutting down)", self.job_id)
            return Finish(
                job_id=self.job_id,
                lease_id=self.lease_id,
                verb="fail",
                reason=FailureReason.MINER_ERROR.value,
                message=f"miner {self._miner_name} shut down while running the job",
                retryable=True,
                with_package=False,
            )
        if reason is StopReason.CANCELED:
            status, verb, failure = JobStatus.CANCELED, "fail", FailureReason.RUNTIME_ERROR.value
            message = "canceled: the job was stopped and its partial results kept"
        elif reason is StopReason.TIMEOUT or result.failure is FailureReason.TIMEOUT:
            status, verb, failure = JobStatus.FAILED, "fail", FailureReason.TIMEOUT.value
            message = result.message or f"the job ran past its timeout of {self.assignment.timeout_seconds} s"
        elif result.failure is not None:
            status, verb, failure, message = JobStatus.FAILED, "fail", result.failure.value, result.message
        else:
            status, verb, failure, message = JobStatus.COMPLETED, "complete", None, result.message
        if status is JobStatus.FAILED:
            message = with_stderr_tail(message, layout.stderr_tail())
        if not layout.result_file.exists():
            layout.result_file.write_text("")
        # output.json says what the status object will: a canceled job has no failure reason (the `fail` that
        # confirms a cancel names one only because the verb needs it).
        shown_failure = None if status is JobStatus.CANCELED else failure
        timings = self._timings or JobTimings()
        layout.write_output(self._output_document(status, shown_failure, message, result, timings))
        return Finish(
            job_id=self.job_id,
            lease_id=self.lease_id,
            verb="complete" if verb == "complete" else "fail",
            exit_code=result.exit_code,
            reason=failure,
            message=message,
            retryable=failure == FailureReason.MINER_ERROR.value,
            usage=result.usage,
            started_at=timings.billed_from.isoformat(),
            ended_at=timings.end().isoformat(),
            timings=timings.report(),
        )

    def _output_document(
        self, status: JobStatus, failure: str | None, message: str, result: RuntimeResult, timings: JobTimings
    ) -> dict[str, Any]:
        finished = datetime.now(UTC)
        started = timings.began
        assignment = self.assignment
        return {
            "job_id": assignment.job_id,
            "status": status.value,
            "type": assignment.type,
            "model": assignment.model,
            "miner_id": self._client.miner_id,
            "miner_name": self._miner_name,
            "attempt": assignment.attempt,
            "params": json.loads(json.dumps(assignment.params, default=str)),
            "started_at": started.isoformat().replace("+00:00", "Z"),
            "finished_at": finished.isoformat().replace("+00:00", "Z"),
            "duration_seconds": round((finished - started).total_seconds(), 3),
            "exit_code": result.exit_code,
            "failure_reason": failure,
            "message": message or None,
            "usage": result.usage,
            "timings": timings.report(),
            **result.output,
        }
