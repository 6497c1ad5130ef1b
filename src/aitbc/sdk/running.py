"""`run`: submit a job and follow it to its end, as one call (Replicate's `run`). The submit asks the
coordinator to hold its answer until the job ends (`Prefer: wait`); a job still going after that is followed
by more such waits on its status, so the caller is answered as soon as the job ends, without polling. The
finished job comes back with its `result` (its result.txt); a failed or canceled one raises, carrying it.

The submit carries an Idempotency-Key (the caller's, or a fresh one), so a connection lost while the answer
was held is retried once without making the job twice: the coordinator answers the retry with the job the
first attempt made."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from aitbc.domain.job import JobStatus
from aitbc.protocol.jobs import JobView, SubmittedJobView
from aitbc.sdk import calls
from aitbc.sdk.calls import SubmitOptions
from aitbc.sdk.errors import ConnectionFailed, JobCanceledError, JobFailedError, JobStillRunning
from aitbc.sdk.steps import Steps

MAX_WAIT_SECONDS = 60  # what the coordinator holds an answer for, at most


def run_steps(
    options: SubmitOptions,
    wait: int,
    timeout: float | None,
    on_submitted: Callable[[SubmittedJobView], None] | None = None,
) -> Steps[JobView]:
    """Submit, then wait on the job until it ends (or `timeout` seconds pass: `JobStillRunning`);
    `on_submitted` hears the submit's answer (its `warnings`) before the waits on the job's status."""
    if not 1 <= wait <= MAX_WAIT_SECONDS:
        raise ValueError(f"wait must be 1 to {MAX_WAIT_SECONDS} seconds")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be positive")
    started = time.monotonic()
    keyed: SubmitOptions = {**options, "idempotency_key": options.get("idempotency_key") or _run_key()}
    try:
        submitted: SubmittedJobView = yield calls.submit(wait=wait, **keyed)
    except ConnectionFailed:
        submitted = yield calls.submit(wait=wait, **keyed)  # the same key: the job the first attempt made, if it did
    if on_submitted is not None:
        on_submitted(submitted)
    job: JobView = submitted
    while not job.status.is_terminal:
        left = None if timeout is None else timeout - (time.monotonic() - started)
        if left is not None and left < 1:
            raise JobStillRunning(job, f"job {job.job_id} is still {job.status.value} after {timeout} s")
        job = yield calls.get(job.job_id, wait=wait if left is None else min(wait, int(left)))
    if job.status is JobStatus.FAILED:
        reason = job.failure_reason.value if job.failure_reason else "failed"
        raise JobFailedError(job, f"job {job.job_id} failed ({reason}): {job.error or 'no error given'}")
    if job.status is JobStatus.CANCELED:
        raise JobCanceledError(job, f"job {job.job_id} was canceled")
    return job


def _run_key() -> str:
    return f"run-{secrets.token_hex(16)}"
