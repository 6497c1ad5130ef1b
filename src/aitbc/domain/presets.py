"""Job presets: a client's named templates and the admins' versioned workflows, and how they layer into a job.

A submit's settings come from up to four layers, each over the one before: the coordinator's defaults, the
workflow's (an admin's preset), the template's (a client's own), and what the request sets itself. A setting a
layer leaves unset (None) falls through to the layer below; `params` merge key by key instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aitbc.domain.job import Priority

# A template's or workflow's name: a letter or digit, then letters, digits, `_` and `-` (no `@`, which
# separates a workflow's name from its version, and no `/` or `.`, so a name is safe in a URL path).
NAME_MAX_LENGTH = 64
NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_\-]{{0,{NAME_MAX_LENGTH - 1}}}$"
MAX_VERSION = 999_999_999
# `NAME` (the newest version) or `NAME@VERSION`.
WORKFLOW_REF_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_\-]{{0,{NAME_MAX_LENGTH - 1}}}(@[1-9][0-9]{{0,8}})?$"
WORKFLOW_REF_MAX_LENGTH = NAME_MAX_LENGTH + 10
# A parameter key a workflow lets users set.
PARAMETER_KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$"
MAX_ALLOWED_KEYS = 200
MAX_TEMPLATES_PER_ACCOUNT = 100
# A preset's `params`, as JSON: presets are settings, not data (a job's input goes in its input).
MAX_PRESET_PARAMS_BYTES = 64 * 1024
MAX_DESCRIPTION_LENGTH = 1000


@dataclass(frozen=True)
class JobSettings:
    """The settings of a job a preset can hold; None (and no key in `params`) means "not set here"."""

    type: str | None = None
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    gpu_type: str | None = None
    gpu_count: int | None = None
    min_vram_gb: float | None = None
    priority: Priority | None = None
    timeout_seconds: int | None = None

    @property
    def is_empty(self) -> bool:
        return not self.params and all(
            value is None
            for value in (
                self.type,
                self.model,
                self.gpu_type,
                self.gpu_count,
                self.min_vram_gb,
                self.priority,
                self.timeout_seconds,
            )
        )


def _last(*values: Any) -> Any:
    """The last value that is set."""
    found = None
    for value in values:
        if value is not None:
            found = value
    return found


def layered(*layers: JobSettings) -> JobSettings:
    """The settings of `layers`, each over the ones before it: a set value wins, `params` merge by key."""
    params: dict[str, Any] = {}
    for layer in layers:
        params.update(layer.params)
    return JobSettings(
        type=_last(*(layer.type for layer in layers)),
        model=_last(*(layer.model for layer in layers)),
        params=params,
        gpu_type=_last(*(layer.gpu_type for layer in layers)),
        gpu_count=_last(*(layer.gpu_count for layer in layers)),
        min_vram_gb=_last(*(layer.min_vram_gb for layer in layers)),
        priority=_last(*(layer.priority for layer in layers)),
        timeout_seconds=_last(*(layer.timeout_seconds for layer in layers)),
    )


@dataclass(frozen=True)
class JobTemplate:
    """A client's named settings for recurring jobs, private to its account; it may name a workflow too."""

    account_id: str
    name: str
    settings: JobSettings
    workflow: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Workflow:
    """An admin's preset, immutable once created: `allowed_keys` are the parameters a user may set (None: any)."""

    name: str
    version: int
    settings: JobSettings
    allowed_keys: tuple[str, ...] | None
    description: str
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def refused_keys(self, keys: Iterable[str]) -> list[str]:
        """The keys among `keys` this workflow does not let a user set, sorted."""
        if self.allowed_keys is None:
            return []
        return sorted(set(keys) - set(self.allowed_keys))


def parse_workflow_ref(ref: str) -> tuple[str, int | None]:
    """`NAME` or `NAME@VERSION` as (name, version or None for the newest); ValueError if it is neither."""
    if not re.fullmatch(WORKFLOW_REF_PATTERN, ref):
        raise ValueError(f"{ref!r} is not a workflow: use NAME or NAME@VERSION (e.g. ai_inference@2)")
    name, _, version = ref.partition("@")
    return name, int(version) if version else None
