"""Job presets on the wire: a client's templates (`/v1/templates`) and the admins' workflows (`/v1/workflows`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from aitbc.domain.job import MAX_TIMEOUT_SECONDS, Priority
from aitbc.domain.presets import (
    MAX_ALLOWED_KEYS,
    MAX_DESCRIPTION_LENGTH,
    MAX_VERSION,
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    PARAMETER_KEY_PATTERN,
    WORKFLOW_REF_MAX_LENGTH,
    WORKFLOW_REF_PATTERN,
)
from aitbc.protocol.jobs import Strict, Time

PresetName = Annotated[str, Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]
WorkflowRef = Annotated[
    str,
    Field(
        min_length=1,
        max_length=WORKFLOW_REF_MAX_LENGTH,
        pattern=WORKFLOW_REF_PATTERN,
        description="a workflow: NAME (its newest version) or NAME@VERSION",
    ),
]
ParameterKey = Annotated[str, Field(min_length=1, max_length=100, pattern=PARAMETER_KEY_PATTERN)]


class PresetRequirements(Strict):
    """Hardware a preset asks for; a field left out (null) is left to the layers under it."""

    gpu_type: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9 _\-]+$")
    gpu_count: int | None = Field(default=None, ge=1, le=64)
    min_vram_gb: float | None = Field(default=None, ge=0, le=4096)


class JobPreset(Strict):
    """The job settings a preset holds; each is optional (a `submit` sets what a preset leaves out)."""

    type: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict, description="runtime parameters (merged key by key)")
    requirements: PresetRequirements = Field(default_factory=PresetRequirements)
    priority: Priority | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)


class CreateTemplateRequest(JobPreset):
    name: PresetName
    workflow: WorkflowRef | None = None
    replace: bool = Field(default=False, description="overwrite a template of this name (else 409)")


class TemplateView(JobPreset):
    name: str
    workflow: str | None = None
    created_at: Time
    updated_at: Time


class CreateWorkflowRequest(JobPreset):
    name: PresetName
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION, description="default: one past the newest")
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    allowed_keys: list[ParameterKey] | None = Field(
        default=None,
        max_length=MAX_ALLOWED_KEYS,
        description="the parameters a user may set (workflow_config / params); null: any",
    )
    description: str = Field(default="", max_length=MAX_DESCRIPTION_LENGTH)


class WorkflowView(JobPreset):
    name: str
    version: int
    workflow: str = Field(description="NAME@VERSION, as a job records it")
    latest: bool = Field(description="the newest version: what NAME alone means")
    allowed_keys: list[str] | None
    description: str
    created_at: Time
