"""SDK errors: an HTTP error answer becomes the matching AITBC error class, with the server's message."""

from __future__ import annotations

import httpx

from aitbc.domain.errors import (
    AitbcError,
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    RateLimited,
    SpendingLimitReached,
    Unauthorized,
)
from aitbc.protocol.jobs import JobView


class ApiError(AitbcError):
    """An error answer the SDK could not map to a more precise class."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ConnectionFailed(AitbcError):
    code = "connection_failed"


class ConnectionLost(ConnectionFailed):
    """A followed event stream lost its connection and could not get it back within its bound (the job itself
    goes on: following it again resumes)."""

    code = "connection_lost"


class ConfigError(AitbcError):
    """The profile file cannot be read, or names no such profile."""

    code = "config_error"


class JobNotCompleted(AitbcError):
    """`run` followed a job that did not complete; `job` is its status object as it stands."""

    code = "job_not_completed"

    def __init__(self, job: JobView, message: str) -> None:
        super().__init__(message)
        self.job = job


class JobFailedError(JobNotCompleted):
    """The job failed: `job.failure_reason` and `job.error` say why (its partial results may be downloaded)."""

    code = "job_failed"


class JobCanceledError(JobNotCompleted):
    code = "job_canceled"


class JobStillRunning(JobNotCompleted):
    """`run`'s timeout passed before the job ended; it goes on (follow it, or cancel it, by `job.job_id`)."""

    code = "job_still_running"


_BY_STATUS: dict[int, type[AitbcError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    402: PaymentRequired,
    422: InvalidInput,
}

# Codes that name a more precise class than their status does (a 402 over the spending limit, not the balance).
_BY_CODE: dict[str, type[AitbcError]] = {SpendingLimitReached.code: SpendingLimitReached}


def error_for_status(status_code: int, message: str) -> AitbcError:
    """The error a call answered with `status_code` raises (an item's error inside a batch's answer)."""
    cls = _BY_STATUS.get(status_code)
    return cls(message) if cls is not None else ApiError(f"HTTP {status_code}: {message}", status_code)


def error_from_response(response: httpx.Response) -> AitbcError:
    """The error, with the index of the refused item (`item`) when a batch was refused."""
    item = None
    code = None
    try:
        body = response.json()
        message = str(body.get("message") or body.get("detail") or response.text)
        item = body.get("item") if isinstance(body.get("item"), int) else None
        code = body.get("error")
    except (ValueError, AttributeError):
        message = response.text or response.reason_phrase
    error: AitbcError
    precise = _BY_CODE.get(code) if isinstance(code, str) else None
    if response.status_code == 429:
        error = RateLimited(message, int(response.headers.get("Retry-After", "1")))
    elif precise is not None and precise.status_code == response.status_code:
        error = precise(message)
    elif (cls := _BY_STATUS.get(response.status_code)) is None:
        error = ApiError(f"HTTP {response.status_code}: {message}", response.status_code)
    else:
        error = cls(message)
    error.item = item
    return error


def raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    raise error_from_response(response)
