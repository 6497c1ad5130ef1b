"""The miner's model cache: one least-recently-used list over the models every AI worker holds (each worker
holds its own copies, in its own process), kept within one memory budget (`--model-cache`), and, where the
machine's memory cannot be read, within a number of models (`--max-models`).

Before a job goes to a worker, its model is admitted: a model the worker holds is used again (warm); any
other is counted at its estimated size (what it measured last time, else its weight files' size) and, when
that would pass the budget, the least recently used models of any worker are unloaded first (the worker is
told `unload` and frees them). A model a running job uses is never unloaded. Once the worker has loaded the
model it says what the model takes, and once the job ends what it holds: the cache follows the workers'
word, and after each job it is back within its budget (a model bigger than the whole budget is unloaded as
soon as its job ends, with a warning). A worker that stops takes its models with it."""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aitbc.domain.matching import Gpu

log = logging.getLogger(__name__)
DEFAULT_MEMORY_SHARE = 0.5  # of the RAM, or of the GPUs' memory on a miner with GPUs
DEFAULT_MAX_MODELS = 4  # only where the memory cannot be read
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx")


class ModelHolder(Protocol):
    """A worker, as the cache sees it: told which of its models to unload, named in the log."""

    def unload(self, models: Sequence[str]) -> None: ...

    def describe(self) -> str: ...


@dataclass
class _Entry:
    size: int
    in_use: bool = False


def describe_bytes(size: int | None) -> str:
    if size is None:
        return "unknown"
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def weight_files_size(folder: Path) -> int:
    """What a model's weights take on disk (every weight file under its folder): its size in memory at the
    precision it was saved in, before it is loaded and measured."""
    total = 0
    for root, _, names in os.walk(folder, followlinks=True):
        for name in names:
            if name.endswith(WEIGHT_SUFFIXES):
                try:
                    total += (Path(root) / name).stat().st_size
                except OSError:
                    continue
    return total


def default_budget(gpus: Sequence[Gpu]) -> int | None:
    """Half the GPUs' memory on a miner with GPUs (its models live there), else half its RAM; None when the
    RAM cannot be read."""
    if gpus:
        return int(sum(gpu.vram_gb for gpu in gpus) * 2**30 * DEFAULT_MEMORY_SHARE)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return int(memory * DEFAULT_MEMORY_SHARE) if memory > 0 else None


class ModelCache:
    def __init__(self, budget_bytes: int | None, max_models: int | None = None) -> None:
        self.budget_bytes = budget_bytes
        self.max_models = max_models if max_models is not None or budget_bytes is not None else DEFAULT_MAX_MODELS
        # (worker, model folder) → entry, the least recently used first
        self._entries: collections.OrderedDict[tuple[ModelHolder, str], _Entry] = collections.OrderedDict()
        self._measured: dict[str, int] = {}  # model folder → the size a worker last measured
        self._unloading: dict[ModelHolder, set[str]] = {}  # told to unload, until the worker next says what it holds

    @classmethod
    def for_miner(cls, budget_bytes: int | None, max_models: int | None, gpus: Sequence[Gpu]) -> ModelCache:
        """The miner's one cache: the budget given, else the default (`default_budget`)."""
        return cls(budget_bytes if budget_bytes is not None else default_budget(gpus), max_models)

    # -- what it holds ----------------------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        return sum(entry.size for entry in self._entries.values())

    def held(self, holder: ModelHolder | None = None) -> list[str]:
        """The models held (by `holder`, else by any worker), the least recently used first."""
        return [model for (owner, model) in self._entries if holder is None or owner is holder]

    def estimate(self, model: str) -> int:
        if model not in self._measured:
            self._measured[model] = weight_files_size(Path(model))
        return self._measured[model]

    # -- one job ----------------------------------------------------------------------------------------

    def admit(self, holder: ModelHolder, model: str) -> bool:
        """`holder` is about to run a job with `model`: make room for it if it must load it (unloading the
        least recently used models no job uses), and keep it from being unloaded until the job ends.
        True when the worker holds it already."""
        key = (holder, model)
        self._unloading.get(holder, set()).discard(model)  # told to unload it before this job: loaded afresh
        entry = self._entries.get(key)
        warm = entry is not None
        if entry is None:
            entry = self._entries[key] = _Entry(self.estimate(model))
        entry.in_use = True
        self._entries.move_to_end(key)
        if not warm:
            self._make_room(f"to load {model}")
        return warm

    def loaded(self, holder: ModelHolder, model: str, size: int) -> None:
        """The worker loaded `model` and measured it: count what it takes (and make room if it takes more
        than estimated)."""
        if size <= 0:
            return
        self._measured[model] = size
        entry = self._entries.get((holder, model))
        if entry is not None and entry.size != size:
            entry.size = size
            self._make_room(f"as {model} took {describe_bytes(size)}")

    def settle(self, holder: ModelHolder, held: Mapping[str, int]) -> None:
        """The job ended and `holder` holds `held` (folder → bytes): the cache takes its word for it, no model
        of its is in use any more, and the cache is back within its budget."""
        unloading = self._unloading.pop(holder, set())
        for key in [key for key in self._entries if key[0] is holder]:
            if key[1] not in held or key[1] in unloading:
                del self._entries[key]
            else:
                self._entries[key].in_use = False
        for model, size in held.items():
            if model in unloading:
                continue
            if size > 0:
                self._measured[model] = size
            entry = self._entries.get((holder, model))
            if entry is None:
                self._entries[(holder, model)] = _Entry(size if size > 0 else self.estimate(model))
            elif size > 0:
                entry.size = size
        self._make_room("after a job")

    def forget(self, holder: ModelHolder) -> None:
        """`holder` stopped: its models went with its process."""
        for key in [key for key in self._entries if key[0] is holder]:
            del self._entries[key]
        self._unloading.pop(holder, None)

    # -- room -------------------------------------------------------------------------------------------

    def _over(self) -> bool:
        over_budget = self.budget_bytes is not None and self.used_bytes > self.budget_bytes
        return over_budget or (self.max_models is not None and len(self._entries) > self.max_models)

    def _make_room(self, why: str) -> None:
        """Unload the least recently used models no job uses until the cache is within its limits."""
        chosen: dict[ModelHolder, list[str]] = {}
        for key, entry in list(self._entries.items()):
            if not self._over():
                break
            if entry.in_use:
                continue
            holder, model = key
            del self._entries[key]
            chosen.setdefault(holder, []).append(model)
            self._unloading.setdefault(holder, set()).add(model)
            log.info(
                "model cache: unloading %s (%s) from %s %s; %s of %s in use",
                model,
                describe_bytes(entry.size),
                holder.describe(),
                why,
                describe_bytes(self.used_bytes),
                describe_bytes(self.budget_bytes),
            )
        for holder, models in chosen.items():
            holder.unload(models)
        if self._over():
            log.warning(
                "model cache: %s of models in use (%d) is over its budget of %s%s; "
                "they are unloaded as soon as their jobs end",
                describe_bytes(self.used_bytes),
                len(self._entries),
                describe_bytes(self.budget_bytes),
                f" or {self.max_models} models" if self.max_models is not None else "",
            )
