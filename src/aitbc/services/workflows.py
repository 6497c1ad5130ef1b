"""Workflows: the named, versioned job presets admins define and every client can list and submit to."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aitbc.domain.clock import Clock
from aitbc.domain.errors import InvalidInput, NotFound, PayloadTooLarge
from aitbc.domain.presets import MAX_PRESET_PARAMS_BYTES, JobSettings, Workflow, parse_workflow_ref
from aitbc.protocol.presets import CreateWorkflowRequest, JobPreset, PresetRequirements, WorkflowView
from aitbc.storage.interfaces import WorkflowStore

# How many workflows an error that lists them names before it says "…".
LISTED = 20


def check_params_size(params: Mapping[str, Any]) -> None:
    """A preset's parameters are settings, not data: refused (413) past `MAX_PRESET_PARAMS_BYTES` as JSON."""
    size = len(json.dumps(params, ensure_ascii=False).encode())
    if size > MAX_PRESET_PARAMS_BYTES:
        raise PayloadTooLarge(
            f"params are {size} bytes as JSON, over a preset's limit of {MAX_PRESET_PARAMS_BYTES}: "
            "put data in the job's input instead"
        )


def preset_settings(preset: JobPreset) -> JobSettings:
    """The settings a request's preset fields hold (validated by the request's model)."""
    requirements = preset.requirements
    return JobSettings(
        type=preset.type,
        model=preset.model,
        params=dict(preset.params),
        gpu_type=requirements.gpu_type,
        gpu_count=requirements.gpu_count,
        min_vram_gb=requirements.min_vram_gb,
        priority=preset.priority,
        timeout_seconds=preset.timeout_seconds,
    )


def preset_fields(settings: JobSettings) -> dict[str, Any]:
    """The fields of a `JobPreset` view for these settings."""
    return {
        "type": settings.type,
        "model": settings.model,
        "params": dict(settings.params),
        "requirements": PresetRequirements(
            gpu_type=settings.gpu_type, gpu_count=settings.gpu_count, min_vram_gb=settings.min_vram_gb
        ),
        "priority": settings.priority,
        "timeout_seconds": settings.timeout_seconds,
    }


def workflow_view(workflow: Workflow, latest: bool) -> WorkflowView:
    return WorkflowView(
        name=workflow.name,
        version=workflow.version,
        workflow=workflow.ref,
        latest=latest,
        allowed_keys=list(workflow.allowed_keys) if workflow.allowed_keys is not None else None,
        description=workflow.description,
        created_at=workflow.created_at,
        **preset_fields(workflow.settings),
    )


def catalogue(every: list[Workflow]) -> str:
    """`ai_inference (versions 2, 1), summarize (version 1)`: what exists, for an error that names none of it."""
    versions: dict[str, list[int]] = {}
    for workflow in every:
        versions.setdefault(workflow.name, []).append(workflow.version)
    named = [
        f"{name} (version{'s' if len(numbers) > 1 else ''} {', '.join(str(n) for n in numbers)})"
        for name, numbers in list(versions.items())[:LISTED]
    ]
    return ", ".join(named) + (", …" if len(versions) > LISTED else "")


class WorkflowService:
    def __init__(self, store: WorkflowStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(self, request: CreateWorkflowRequest) -> WorkflowView:
        """A new version (the next one unless the request names it); an existing version is a 409."""
        check_params_size(request.params)
        keys = tuple(dict.fromkeys(request.allowed_keys)) if request.allowed_keys is not None else None
        workflow = Workflow(
            name=request.name,
            version=request.version or 0,
            settings=preset_settings(request),
            allowed_keys=keys,
            description=request.description,
            created_at=self._clock.now(),
        )
        added = await self._store.add_workflow(workflow, next_version=request.version is None)
        newest = await self._store.get_workflow(added.name, None)
        return workflow_view(added, latest=newest is not None and newest.version == added.version)

    async def list(self) -> list[WorkflowView]:
        """Every version of every workflow, by name, newest first (`latest` marks what NAME alone means)."""
        every = await self._store.list_workflows()
        return [
            workflow_view(workflow, latest=index == 0 or every[index - 1].name != workflow.name)
            for index, workflow in enumerate(every)
        ]

    async def find(self, ref: str) -> Workflow:
        """The workflow `NAME` (newest) or `NAME@VERSION`; a 404 that says what exists when there is none."""
        try:
            name, version = parse_workflow_ref(ref)
        except ValueError as error:
            raise InvalidInput(str(error)) from None
        found = await self._store.get_workflow(name, version)
        if found is not None:
            return found
        every = await self._store.list_workflows()
        versions = [workflow.version for workflow in every if workflow.name == name]
        if versions:
            raise NotFound(
                f"workflow {name!r} has no version {version}; its versions: {', '.join(str(v) for v in versions)}"
            )
        if not every:
            raise NotFound(
                f"workflow {name!r} not found: no workflow is defined yet (an admin creates them with "
                "`aitbc admin workflows create`)"
            )
        raise NotFound(f"workflow {name!r} not found; the workflows are: {catalogue(every)}")
