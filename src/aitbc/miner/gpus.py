"""Which GPUs a miner declares: read from `nvidia-smi`, none, or a hand-written spec like `a100:80x2`."""

from __future__ import annotations

import re
import shutil
import subprocess

from aitbc.domain.matching import Gpu

_SPEC = re.compile(r"^(?P<model>[A-Za-z0-9 _\-]+?)(?::(?P<vram>\d+(?:\.\d+)?))?(?:x(?P<count>\d+))?$")
NVIDIA_SMI_TIMEOUT_SECONDS = 10


def parse_gpu_spec(spec: str) -> list[Gpu]:
    """`a100:80x2,rtx3090:24` → two A100s with 80 GB and one RTX 3090 with 24 GB (VRAM defaults to 0)."""
    gpus: list[Gpu] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        match = _SPEC.match(part)
        if match is None:
            raise ValueError(f"cannot read the GPU spec {part!r}: write MODEL[:VRAM_GB][xCOUNT], like a100:80x2")
        count = int(match["count"] or 1)
        if not 1 <= count <= 64:
            raise ValueError(f"GPU count in {part!r} must be between 1 and 64")
        gpus.extend(Gpu(model=match["model"].strip(), vram_gb=float(match["vram"] or 0)) for _ in range(count))
    return gpus


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """Lines of `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` (MiB)."""
    gpus: list[Gpu] = []
    for line in output.splitlines():
        name, _, memory = line.rpartition(",")
        if not name.strip():
            continue
        try:
            vram_gb = round(float(memory.strip()) / 1024, 1)
        except ValueError:
            vram_gb = 0.0
        gpus.append(Gpu(model=name.strip(), vram_gb=vram_gb))
    return gpus


def detect_gpus() -> list[Gpu]:
    """The GPUs `nvidia-smi` reports; none when it is missing or fails (a CPU-only miner)."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        answer = subprocess.run(
            [executable, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(answer.stdout) if answer.returncode == 0 else []


def resolve_gpus(option: str) -> list[Gpu]:
    """`--gpus auto|none|SPEC`."""
    if option == "auto":
        return detect_gpus()
    if option == "none":
        return []
    return parse_gpu_spec(option)


class GpuSlots:
    """Which of this miner's GPUs (by index) each running job holds: a job gets the least busy ones, so jobs
    share a GPU only when there are more jobs wanting one than GPUs."""

    def __init__(self, count: int) -> None:
        self._busy = dict.fromkeys(range(count), 0)

    def acquire(self, wanted: int) -> tuple[int, ...]:
        chosen = sorted(sorted(self._busy, key=lambda index: (self._busy[index], index))[:wanted])
        for index in chosen:
            self._busy[index] += 1
        return tuple(chosen)

    def release(self, indices: tuple[int, ...]) -> None:
        for index in indices:
            self._busy[index] = max(0, self._busy[index] - 1)

    @property
    def free(self) -> list[int]:
        return [index for index, jobs in self._busy.items() if jobs == 0]
