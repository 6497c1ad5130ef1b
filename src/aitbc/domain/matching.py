"""Which miner can run which job: job type (runtime), model, GPU model, GPU count and VRAM, and whether the
job's input and params are valid for the schemas the miner declared for its runtime."""

from __future__ import annotations

from dataclasses import dataclass, field

from aitbc.domain.job import JobSpec
from aitbc.domain.runtime_schemas import RuntimeSchemas, input_problem, params_problem


@dataclass(frozen=True)
class Gpu:
    model: str
    vram_gb: float


@dataclass(frozen=True)
class Capabilities:
    """What a miner declared at registration."""

    runtimes: frozenset[str]
    models: frozenset[str] = frozenset()
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)
    # (runtime, its schemas), sorted by runtime; a runtime not named (every one, for a miner registered before
    # schemas existed) takes any input and params.
    schemas: tuple[tuple[str, RuntimeSchemas], ...] = ()

    @classmethod
    def with_schemas(
        cls,
        runtimes: frozenset[str],
        models: frozenset[str] = frozenset(),
        gpus: tuple[Gpu, ...] = (),
        schemas: dict[str, RuntimeSchemas] | None = None,
    ) -> Capabilities:
        """Capabilities with `schemas` by runtime, kept in one order (so equal declarations compare equal)."""
        return cls(runtimes, models, gpus, tuple(sorted((schemas or {}).items())))

    def schemas_for(self, runtime: str) -> RuntimeSchemas | None:
        return next((declared for name, declared in self.schemas if name == runtime), None)

    def schemas_by_runtime(self) -> dict[str, RuntimeSchemas]:
        return dict(self.schemas)


def normalize_gpu_model(name: str) -> str:
    """`NVIDIA A100-SXM4-80GB`, `a100` and `A100` all compare as `a100`; `RTX 3090` as `rtx3090`."""
    cleaned = name.lower().replace("nvidia", "").replace("geforce", "").replace("tesla", "")
    cleaned = cleaned.replace(" ", "").replace("_", "")
    return cleaned.split("-")[0]


def gpu_matches(wanted: str, offered: str) -> bool:
    want, have = normalize_gpu_model(wanted), normalize_gpu_model(offered)
    return have == want or have.startswith(want)


def pinned_elsewhere(spec: JobSpec, miner_id: str) -> bool:
    """Whether the job is pinned to another miner (`--agent-id`): then this one may not take it."""
    pinned = spec.requirements.miner_id
    return pinned is not None and pinned != miner_id


def can_take(spec: JobSpec, miner_id: str, capabilities: Capabilities, inputs: bool = True) -> bool:
    """Whether this miner may be handed this job: not pinned to another, and nothing it needs is missing
    (`inputs=False`: its hardware and runtime only, for a spec that carries no input, e.g. a queue count)."""
    return not pinned_elsewhere(spec, miner_id) and not unmet_requirements(spec, capabilities, inputs)


def gpu_models(capabilities: Capabilities) -> list[str]:
    """The miner's GPU models, normalized, each once, in the order it declared them."""
    return list(dict.fromkeys(normalize_gpu_model(gpu.model) for gpu in capabilities.gpus))


def unmet_requirements(spec: JobSpec, capabilities: Capabilities, inputs: bool = True) -> list[str]:
    """Why this miner cannot run this job; an empty list means it can. With `inputs` (the default), the job's
    input and params are checked against the schemas the miner declared for the job's runtime; `inputs=False`
    is for a spec that carries none (the marketplace's queue counts and quotes)."""
    reasons: list[str] = []
    if spec.type not in capabilities.runtimes:
        reasons.append(f"runtime '{spec.type}' not offered")
    else:
        if spec.model and capabilities.models and spec.model not in capabilities.models and spec.type != "command":
            reasons.append(f"model '{spec.model}' not served")
        declared = capabilities.schemas_for(spec.type) if inputs else None
        if declared is not None:
            problems = (
                input_problem(spec.type, declared, spec.input, spec.input_file_id),
                params_problem(spec.type, declared, spec.params),
            )
            reasons.extend(problem for problem in problems if problem is not None)
    wanted = spec.requirements
    if wanted.needs_gpu or wanted.gpu_count > 1:
        fitting = [
            gpu
            for gpu in capabilities.gpus
            if (wanted.gpu_type is None or gpu_matches(wanted.gpu_type, gpu.model))
            and (wanted.min_vram_gb is None or gpu.vram_gb >= wanted.min_vram_gb)
        ]
        if len(fitting) < wanted.gpu_count:
            reasons.append(describe_gpu_need(spec))
    return reasons


def describe_gpu_need(spec: JobSpec) -> str:
    wanted = spec.requirements
    what = wanted.gpu_type or "GPU"
    vram = f" with ≥{wanted.min_vram_gb:g} GB VRAM" if wanted.min_vram_gb else ""
    return f"needs {wanted.gpu_count}x {what}{vram}"
