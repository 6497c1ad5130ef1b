"""Resolving a submit that names a template or a workflow into the settings of its job.

Only a submit that names one comes here: the hot path (a plain submit) reads no preset. The layers, each over
the one before (`domain.presets.layered`): the workflow (the request's, else the template's), the template, and
the fields the request sets itself (`model_fields_set`: a field left out is not a field set to its default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aitbc.domain.accounts import Principal
from aitbc.domain.job import DEFAULT_TIMEOUT_SECONDS, Priority
from aitbc.domain.presets import JobSettings, JobTemplate, Workflow, layered
from aitbc.protocol.jobs import JobRequirements, SubmitJobRequest
from aitbc.services.templates import TemplateService, check_allowed_keys
from aitbc.services.workflows import WorkflowService


@dataclass(frozen=True)
class Resolved:
    """The request with its presets' settings filled in, and the presets it used (workflow as NAME@VERSION)."""

    request: SubmitJobRequest
    template: str | None
    workflow: str | None


def explicit_settings(request: SubmitJobRequest) -> JobSettings:
    """What the request itself sets: fields it sends (null is not a setting), requirements field by field."""
    given = request.model_fields_set
    requirements = request.requirements
    set_requirements = requirements.model_fields_set if "requirements" in given else set()
    return JobSettings(
        type=request.type,
        model=request.model,
        params=request.params,
        gpu_type=requirements.gpu_type,
        gpu_count=requirements.gpu_count if "gpu_count" in set_requirements else None,
        min_vram_gb=requirements.min_vram_gb,
        priority=request.priority if "priority" in given else None,
        timeout_seconds=request.timeout_seconds if "timeout_seconds" in given else None,
    )


class PresetResolver:
    def __init__(self, templates: TemplateService, workflows: WorkflowService) -> None:
        self._templates = templates
        self._workflows = workflows

    async def resolve(
        self, principal: Principal, request: SubmitJobRequest, memo: dict[str, Any] | None = None
    ) -> Resolved:
        """The request's job settings after its template and workflow. `memo` keeps what a batch looked up
        for its next items. An unknown template or workflow is a 404; a parameter the workflow does not let a
        user set (in the request's `params` or the template's) a 422 naming it."""
        memo = {} if memo is None else memo
        template: JobTemplate | None = None
        if request.template is not None:
            key = f"template:{request.template}"
            if key not in memo:
                memo[key] = await self._templates.find(principal, request.template)
            template = memo[key]
        ref = request.workflow or (template.workflow if template is not None else None)
        workflow: Workflow | None = None
        if ref is not None:
            key = f"workflow:{ref}"
            if key not in memo:
                memo[key] = await self._workflows.find(ref)
            workflow = memo[key]
        explicit = explicit_settings(request)
        if workflow is not None:
            user_keys = set(explicit.params) | set(template.settings.params if template is not None else ())
            check_allowed_keys(workflow, user_keys)
        layers = [preset.settings for preset in (workflow, template) if preset is not None]
        merged = layered(*layers, explicit)
        resolved = request.model_copy(
            update={
                "type": merged.type,
                "model": merged.model,
                "params": dict(merged.params),
                "requirements": JobRequirements(
                    gpu_type=merged.gpu_type, gpu_count=merged.gpu_count or 1, min_vram_gb=merged.min_vram_gb
                ),
                "priority": merged.priority or Priority.NORMAL,
                "timeout_seconds": merged.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
            }
        )
        return Resolved(
            request=resolved,
            template=template.name if template is not None else None,
            workflow=workflow.ref if workflow is not None else None,
        )
