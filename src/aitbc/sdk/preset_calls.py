"""API calls for job presets: a client's templates and the admins' workflows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, Unpack
from urllib.parse import quote

from aitbc.domain.job import Priority
from aitbc.protocol.presets import PresetRequirements, TemplateView, WorkflowView
from aitbc.sdk.calls import Call, model, models


class PresetOptions(TypedDict, total=False):
    """The job settings a workflow holds besides its type, by their wire names; each optional."""

    model: str | None
    params: Mapping[str, Any] | None
    requirements: PresetRequirements | Mapping[str, Any] | None
    priority: Priority | str | None
    timeout_seconds: int | None


class TemplateOptions(PresetOptions, total=False):
    """The job settings a template holds, by their wire names; each optional."""

    type: str | None


def _body(options: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, PresetRequirements):
            value = value.model_dump(mode="json", exclude_none=True)
        elif isinstance(value, Mapping):
            value = dict(value)
        if value is not None:
            body[name] = value
    return body


def create_template(
    name: str, *, workflow: str | None = None, replace: bool = False, **settings: Unpack[TemplateOptions]
) -> Call[TemplateView]:
    """POST /v1/templates: save these settings as `name` (`replace`: overwrite one of that name, else 409)."""
    body = {"name": name, **_body(settings), **_body({"workflow": workflow}), "replace": replace}
    return Call("POST", "/v1/templates", model(TemplateView), json=body)


def list_templates() -> Call[list[TemplateView]]:
    return Call("GET", "/v1/templates", models(TemplateView))


def get_template(name: str) -> Call[TemplateView]:
    return Call("GET", f"/v1/templates/{quote(name, safe='')}", model(TemplateView))


def delete_template(name: str) -> Call[TemplateView]:
    return Call("DELETE", f"/v1/templates/{quote(name, safe='')}", model(TemplateView))


def create_workflow(
    name: str,
    type: str,
    *,
    version: int | None = None,
    allowed_keys: list[str] | None = None,
    description: str = "",
    **settings: Unpack[PresetOptions],
) -> Call[WorkflowView]:
    """POST /v1/admin/workflows: a workflow's next version (or `version`); `allowed_keys` None lets users set any
    parameter."""
    fields = {"version": version, "allowed_keys": allowed_keys, "description": description}
    body = {"name": name, **_body(settings), "type": type, **_body(fields)}
    return Call("POST", "/v1/admin/workflows", model(WorkflowView), json=body)


def list_workflows() -> Call[list[WorkflowView]]:
    return Call("GET", "/v1/workflows", models(WorkflowView))
