"""How the CLI shows job presets (templates and workflows) and reads the job settings their commands take."""

from __future__ import annotations

import json
from typing import Any

from aitbc.protocol.presets import JobPreset


def requirements_option(gpu: str | None, gpu_count: int | None, min_vram: float | None) -> dict[str, Any]:
    """The requirements the flags give (`--gpu`, `--gpu-count`, `--min-vram`), leaving out those not given."""
    given = {"gpu_type": gpu, "gpu_count": gpu_count, "min_vram_gb": min_vram}
    return {name: value for name, value in given.items() if value is not None}


def gpu_text(preset: JobPreset) -> str:
    requirements = preset.requirements
    parts = []
    if requirements.gpu_type or requirements.gpu_count:
        parts.append(f"{requirements.gpu_count or 1}× {requirements.gpu_type or 'any GPU'}")
    if requirements.min_vram_gb is not None:
        parts.append(f"≥{requirements.min_vram_gb:g} GB")
    return ", ".join(parts) or "-"


def params_text(params: dict[str, Any], limit: int = 60) -> str:
    """Parameters as compact JSON, cut at `limit` characters for a table cell."""
    if not params:
        return "-"
    text = json.dumps(params, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def settings_rows(preset: JobPreset) -> list[tuple[str, str]]:
    """The settings a preset holds, as (label, value) rows; "-" for one it leaves to the submit."""
    return [
        ("Type", preset.type or "-"),
        ("Model", preset.model or "-"),
        ("Priority", preset.priority.value if preset.priority else "-"),
        ("Timeout", f"{preset.timeout_seconds} s" if preset.timeout_seconds else "-"),
        ("GPU", gpu_text(preset)),
        ("Params", json.dumps(preset.params, ensure_ascii=False) if preset.params else "-"),
    ]
