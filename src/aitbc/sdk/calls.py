"""Each API call described once (method, path, body, how to read the answer), run by both clients."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypedDict, TypeVar, Unpack

import httpx
from pydantic import BaseModel, TypeAdapter

from aitbc.domain.job import Priority
from aitbc.protocol.admin import AccountView, CreatedKeyView, KeyView
from aitbc.protocol.batches import BatchResult
from aitbc.protocol.cancels import CancelJobsResult
from aitbc.protocol.jobs import (
    CancelResult,
    JobList,
    JobRequirements,
    JobView,
    JsonInput,
    OutputConfig,
    SubmittedJobView,
)
from aitbc.protocol.results import (
    CoordinatorKeyView,
    CreatedShareView,
    LogsView,
    ReceiptView,
    ResultPackageView,
    ResultsDeleted,
    RevokedShares,
    ShareList,
    ShareView,
)
from aitbc.sdk.errors import raise_for_status

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        raise_for_status(response)
        return cls.model_validate_json(response.content)

    return parse


def models(item: type[M]) -> Callable[[httpx.Response], list[M]]:
    adapter = TypeAdapter(list[item])  # type: ignore[valid-type]

    def parse(response: httpx.Response) -> list[M]:
        raise_for_status(response)
        parsed: list[M] = adapter.validate_json(response.content)
        return parsed

    return parse


_job = model(JobView)
_submitted = model(SubmittedJobView)


def cancel_result(response: httpx.Response) -> CancelResult:
    """A cancel of a finished job is a 409 whose body still says what happened; that is an answer, not an
    error."""
    if response.status_code == 409:
        try:
            return CancelResult.model_validate_json(response.content)
        except ValueError:
            pass
    raise_for_status(response)
    return CancelResult.model_validate_json(response.content)


class SubmitOptions(TypedDict, total=False):
    """The fields of the POST /v1/jobs body by their wire names (each optional: the coordinator's defaults
    apply), and the Idempotency-Key header that makes a retried submit safe."""

    type: str | None
    model: str | None
    input: JsonInput
    input_file_id: str | None
    params: Mapping[str, Any] | None
    requirements: JobRequirements | Mapping[str, Any] | None
    priority: Priority | str | None
    timeout_seconds: int | None
    queue_timeout_seconds: int | None
    output_config: OutputConfig | Mapping[str, Any] | None
    template: str | None
    workflow: str | None
    name: str | None
    tags: list[str] | None
    idempotency_key: str | None


class JobFilters(TypedDict, total=False):
    """Which jobs a listing returns, and how many a page."""

    status: list[str] | None
    days: int | None
    from_: str | None
    to: str | None
    tag: str | None
    name: str | None
    limit: int


def prefer_wait(wait: int | None) -> dict[str, str]:
    """The header that asks the coordinator to hold its answer until the job ends, up to `wait` seconds."""
    return {"Prefer": f"wait={wait}"} if wait else {}


def _known(function: str, given: Mapping[str, Any], options: Any) -> None:
    """Typed keyword options are checked by mypy; this says the same at run time to a caller without it."""
    unknown = sorted(set(given) - set(options.__optional_keys__))
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")


def _wire(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return dict(value) if isinstance(value, Mapping) else value


def submit(*, wait: int | None = None, **options: Unpack[SubmitOptions]) -> Call[SubmittedJobView]:
    """POST /v1/jobs with the body's own field names; what is not given is left to the coordinator's defaults.
    With `wait`, the answer comes once the job ends (with its `result`), or after `wait` seconds (at most 60)."""
    _known("submit", options, SubmitOptions)
    fields = {name: value for name, value in options.items() if name != "idempotency_key"}
    body = {name: _wire(value) for name, value in fields.items() if value is not None}
    key = options.get("idempotency_key")
    headers = {"Idempotency-Key": key} if key else {}
    return Call("POST", "/v1/jobs", _submitted, json=body, headers=headers | prefer_wait(wait))


def submit_many(jobs: Iterable[SubmitOptions]) -> Call[BatchResult]:
    """POST /v1/jobs/batch: each job as `submit` takes it (the body's field names, and its own
    `idempotency_key`); one request, all stored or none."""
    items = []
    for index, job in enumerate(jobs):
        unknown = sorted(set(job) - set(SubmitOptions.__optional_keys__))
        if unknown:
            raise TypeError(f"submit_many(): job {index} has an unexpected field {unknown[0]!r}")
        items.append({name: _wire(value) for name, value in job.items() if value is not None})
    return Call("POST", "/v1/jobs/batch", model(BatchResult), json={"jobs": items})


def get(job_id: str, wait: int | None = None) -> Call[JobView]:
    """GET the status object; with `wait`, once the job ends (with its `result`) or after `wait` seconds."""
    return Call("GET", f"/v1/jobs/{job_id}", model(JobView), headers=prefer_wait(wait))


_FILTER_PARAMETERS = (
    ("status", "status"),
    ("days", "days"),
    ("from", "from_"),
    ("to", "to"),
    ("tag", "tag"),
    ("name", "name"),
)


def list_jobs(cursor: str | None = None, **filters: Unpack[JobFilters]) -> Call[JobList]:
    _known("list", filters, JobFilters)
    params: dict[str, Any] = {"limit": filters.get("limit", 50)}
    for name, key in _FILTER_PARAMETERS:
        if value := filters.get(key):
            params[name] = value
    if cursor:
        params["cursor"] = cursor
    return Call("GET", "/v1/jobs", model(JobList), params=params)


def cancel(job_id: str) -> Call[CancelResult]:
    return Call("POST", f"/v1/jobs/{job_id}/cancel", cancel_result)


def cancel_matching(
    status: list[str] | None = None,
    tag: str | None = None,
    name: str | None = None,
    from_: str | None = None,
    to: str | None = None,
    all: bool = False,
    limit: int | None = None,
) -> Call[CancelJobsResult]:
    """POST /v1/jobs/cancel: the caller's unfinished jobs the filter matches (`all`: every one, no filter)."""
    fields = {"status": status, "tag": tag, "name": name, "from": from_, "to": to, "limit": limit}
    body: dict[str, Any] = {name: value for name, value in fields.items() if value}
    if all:
        body["all"] = True
    return Call("POST", "/v1/jobs/cancel", model(CancelJobsResult), json=body)


def create_key(name: str, role: str, plan: str | None = None) -> Call[CreatedKeyView]:
    return Call("POST", "/v1/admin/keys", model(CreatedKeyView), json={"name": name, "role": role, "plan": plan})


def list_keys(account: str | None = None) -> Call[list[KeyView]]:
    return Call("GET", "/v1/admin/keys", models(KeyView), params={"account": account} if account else {})


def revoke_key(key_id: str) -> Call[KeyView]:
    return Call("DELETE", f"/v1/admin/keys/{key_id}", model(KeyView))


def list_accounts() -> Call[list[AccountView]]:
    return Call("GET", "/v1/admin/accounts", models(AccountView))


def set_plan(name: str, plan: str) -> Call[AccountView]:
    return Call("POST", f"/v1/admin/accounts/{name}/plan", model(AccountView), json={"plan": plan})


# -- results -----------------------------------------------------------------------------------------


def result_package(job_id: str) -> Call[ResultPackageView]:
    return Call("GET", f"/v1/jobs/{job_id}/results", model(ResultPackageView))


def receipt(job_id: str) -> Call[ReceiptView]:
    return Call("GET", f"/v1/jobs/{job_id}/receipt", model(ReceiptView))


def coordinator_key() -> Call[CoordinatorKeyView]:
    return Call("GET", "/v1/coordinator/key", model(CoordinatorKeyView))


def delete_results(job_id: str) -> Call[ResultsDeleted]:
    return Call("DELETE", f"/v1/jobs/{job_id}/results", model(ResultsDeleted))


def logs(job_id: str, after: int = 0) -> Call[LogsView]:
    return Call("GET", f"/v1/jobs/{job_id}/logs", model(LogsView), params={"after": after})


def create_share(job_id: str, expires_in_seconds: int | None = None) -> Call[CreatedShareView]:
    body = {"expires_in_seconds": expires_in_seconds} if expires_in_seconds is not None else {}
    return Call("POST", f"/v1/jobs/{job_id}/shares", model(CreatedShareView), json=body)


def list_shares(job_id: str) -> Call[ShareList]:
    return Call("GET", f"/v1/jobs/{job_id}/shares", model(ShareList))


def revoke_share(job_id: str, share_id: str) -> Call[ShareView]:
    return Call("DELETE", f"/v1/jobs/{job_id}/shares/{share_id}", model(ShareView))


def revoke_shares(job_id: str) -> Call[RevokedShares]:
    return Call("DELETE", f"/v1/jobs/{job_id}/shares", model(RevokedShares))
