"""Each API call described once (method, path, body, how to read the answer), run by both clients."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from aitbc.domain.job import Priority
from aitbc.protocol.admin import AccountView, CreatedKeyView, KeyView
from aitbc.protocol.jobs import CancelResult, JobList, JobRequirements, JobView, JsonInput, OutputConfig
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


def _wire(value: BaseModel | Mapping[str, Any]) -> Any:
    return value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else dict(value)


def submit(
    *,
    type: str | None = None,
    model: str | None = None,
    input: JsonInput = None,
    input_file_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    requirements: JobRequirements | Mapping[str, Any] | None = None,
    priority: Priority | str | None = None,
    timeout_seconds: int | None = None,
    output_config: OutputConfig | Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Call[JobView]:
    """POST /v1/jobs with the body's own field names; what is not given is left to the coordinator's defaults."""
    fields: dict[str, Any] = {
        "type": type,
        "model": model,
        "input": input,
        "input_file_id": input_file_id,
        "params": dict(params) if params is not None else None,
        "requirements": _wire(requirements) if requirements is not None else None,
        "priority": priority,
        "timeout_seconds": timeout_seconds,
        "output_config": _wire(output_config) if output_config is not None else None,
    }
    body = {name: value for name, value in fields.items() if value is not None}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Call("POST", "/v1/jobs", _job, json=body, headers=headers)


def get(job_id: str) -> Call[JobView]:
    return Call("GET", f"/v1/jobs/{job_id}", model(JobView))


def list_jobs(
    *,
    status: list[str] | None = None,
    days: int | None = None,
    from_: str | None = None,
    to: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Call[JobList]:
    params: dict[str, Any] = {"limit": limit}
    for name, value in (("status", status), ("days", days), ("from", from_), ("to", to), ("cursor", cursor)):
        if value:
            params[name] = value
    return Call("GET", "/v1/jobs", model(JobList), params=params)


def cancel(job_id: str) -> Call[CancelResult]:
    return Call("POST", f"/v1/jobs/{job_id}/cancel", cancel_result)


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
