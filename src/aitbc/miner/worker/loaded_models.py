"""The models one AI worker holds, by model folder: loaded at first use and kept for the next job, until the
miner says to unload one. The miner decides (its `ModelCache` keeps every worker's models within one memory
budget); the worker measures what each model takes, never unloads the one its running job uses, and frees
what it unloads: its references are dropped, the garbage collector runs, and CUDA's cached blocks go back to
the GPU. Each unload is checked: a model object still alive afterwards (something else kept a reference) is
said so on stderr, which the miner logs.

A model's footprint is its tensors: parameters and buffers, elements × element size. That is what it holds
in RAM or GPU memory; the tokenizer's few megabytes and the allocator's slack are not counted. On the CPU,
freed tensor memory returns to the system as the C allocator decides (the large ones at once)."""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Loaded:
    """A model as a job gets it: the object, whether it was already loaded, how long loading took (0 when
    warm), and its measured footprint in bytes."""

    model: Any
    warm: bool
    load_seconds: float
    size: int


@dataclass(frozen=True)
class _Held:
    model: Any
    device: str
    size: int


def footprint(model: Any) -> int:
    """Bytes of the model's tensors (parameters and buffers, each once); 0 when it has none we can see."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    if not isinstance(module, torch.nn.Module):
        return 0
    seen: set[int] = set()
    total = 0
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


def _release_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class Models:
    """Loaded models by folder. Jobs load on the main thread; the miner's `unload` arrives on the reader
    thread and may come while a job runs, so the table is guarded by a lock (never held while loading)."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._in_use: str | None = None
        self._say = say or (lambda line: print(f"aitbc worker: {line}", file=sys.stderr, flush=True))

    def get(self, folder: str, device: str, load: Callable[[], Any]) -> Loaded:
        """The model of `folder` on `device` for the running job (which holds it until `release`): the one
        held, else `load()`'s, timed and measured."""
        with self._lock:
            self._in_use = folder
            held = self._held.get(folder)
        if held is not None and held.device == device:
            return Loaded(held.model, True, 0.0, held.size)
        if held is not None:  # on another device: this one replaces it
            held = None
            self.unload([folder], force=True)
        began = time.monotonic()
        model = load()
        seconds = time.monotonic() - began
        size = footprint(model)
        with self._lock:
            self._held[folder] = _Held(model, device, size)
        return Loaded(model, False, seconds, size)

    def release(self) -> None:
        """The running job is over: its model may be unloaded from now on."""
        with self._lock:
            self._in_use = None

    def held(self) -> dict[str, int]:
        """What this worker holds: folder → footprint in bytes."""
        with self._lock:
            return {folder: held.size for folder, held in self._held.items()}

    def unload(self, folders: Iterable[str], force: bool = False) -> list[str]:
        """Drop the models of `folders` (never the running job's, unless `force`) and free their memory;
        returns the folders unloaded."""
        dropped: list[tuple[str, _Held]] = []
        with self._lock:
            for folder in folders:
                if folder == self._in_use and not force:
                    self._say(f"kept {folder}: the running job uses it")
                    continue
                held = self._held.pop(folder, None)
                if held is not None:
                    dropped.append((folder, held))
            held = None  # no reference to a dropped model is left here
        if not dropped:
            return []
        watched = [(folder, entry.size, _watch(entry.model)) for folder, entry in dropped]
        dropped.clear()
        gc.collect()
        _release_cuda_cache()
        for folder, size, alive in watched:
            state = "still referenced elsewhere" if alive() else "freed"
            self._say(f"unloaded {folder} ({size / 2**20:.1f} MiB): {state}")
        return [folder for folder, _, _ in watched]


def _watch(model: Any) -> Callable[[], bool]:
    """Whether `model` is still alive later (a weak reference; an object that takes none counts as freed)."""
    try:
        reference = weakref.ref(model)
    except TypeError:
        return lambda: False
    return lambda: reference() is not None
