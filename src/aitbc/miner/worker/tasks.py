"""What the worker does for one job, inside its sandbox: get its model (loaded once and kept for the next job,
until the miner unloads it; `loaded_models`), say when it is ready, read the job's input from the exchange
folder, write its output there, and report progress.

The miner checked the input's shape and the params before handing the job over; this side reads only
files the miner put in the exchange folder and writes only the output file it was told to."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aitbc.miner.runtimes.generation_params import GenerationParams
from aitbc.miner.runtimes.interface import JobFailed
from aitbc.miner.runtimes.models import pick_device
from aitbc.miner.worker.loaded_models import Loaded, Models
from aitbc.miner.worker.messages import EXCHANGE, INPUT_FOLDER, MODEL, OUTPUT_FOLDER, file_name

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from aitbc.miner.runtimes.transformers_backend import TransformersBackend

BATCH_SIZE = 32


class Job:
    """The job the worker runs now: where to report, and whether the miner asked it to stop."""

    def __init__(self, send: Callable[..., None]) -> None:
        self._send = send
        self.stop = threading.Event()

    def progress(self, percent: float, message: str | None = None) -> None:
        self._send("progress", percent=percent, message=message)

    def log(self, line: str, stream: str = "stdout") -> None:
        self._send("log", stream=stream, line=line)

    def stopped(self) -> bool:
        return self.stop.is_set()

    def ready(self, loaded: Loaded) -> Loaded:
        """Tell the miner the job's model is ready: its work, and its bill, start now."""
        self._send(MODEL, warm=loaded.warm, load_seconds=round(loaded.load_seconds, 3), size=loaded.size)
        return loaded


def input_path(request: dict[str, Any], key: str) -> Path:
    return Path(EXCHANGE) / INPUT_FOLDER / file_name(request.get(key))


def output_path(request: dict[str, Any], key: str) -> Path:
    return Path(EXCHANGE) / OUTPUT_FOLDER / file_name(request.get(key))


def encoder(models: Models, job: Job, folder: str, device: str) -> SentenceTransformer:
    def load() -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(folder, device=device, local_files_only=True)

    return job.ready(models.get(folder, device, load)).model  # type: ignore[no-any-return]


def generator(models: Models, job: Job, folder: str, device: str) -> TransformersBackend:
    def load() -> TransformersBackend:
        from aitbc.miner.runtimes.transformers_backend import TransformersBackend

        return TransformersBackend(Path(folder), device)

    return job.ready(models.get(folder, device, load)).model  # type: ignore[no-any-return]


def embed(job: Job, request: dict[str, Any], models: Models) -> dict[str, Any]:
    """Encode in batches, checking for a stop between batches; a stopped job keeps the vectors it has."""
    import numpy as np

    texts = json.loads(input_path(request, "texts").read_text(encoding="utf-8"))
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise JobFailed("the texts to embed must be a list of strings")
    device = pick_device(str(request.get("device", "cpu")))
    job.log(f"embedding {len(texts)} text(s) with {request.get('name')} on {device}")
    model = encoder(models, job, str(request["model"]), device)
    normalize = bool(request.get("normalize", True))
    parts: list[Any] = []
    for start in range(0, len(texts), BATCH_SIZE):
        if job.stopped():
            break
        batch = texts[start : start + BATCH_SIZE]
        vectors = model.encode(batch, batch_size=BATCH_SIZE, normalize_embeddings=normalize, convert_to_numpy=True)
        parts.append(np.asarray(vectors))
        job.progress(100 * (start + len(batch)) / len(texts))
    encoded = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), dtype=np.float32)
    with output_path(request, "output").open("wb") as handle:
        np.save(handle, encoded, allow_pickle=False)
    return {"count": int(encoded.shape[0]), "device": device}


def generate(job: Job, request: dict[str, Any], models: Models) -> dict[str, Any]:
    """Generate from the prompt file into the output file; stops at the next token once asked to."""
    prompt = input_path(request, "prompt").read_text(encoding="utf-8")
    params = GenerationParams.from_params(dict(request.get("params") or {}))
    device = pick_device(str(request.get("device", "cpu")))
    job.log(f"generating up to {params.max_tokens} tokens with {request.get('name')} on {device}")
    backend = generator(models, job, str(request["model"]), device)
    generated = backend.generate(prompt, params, job.progress, job.stopped)
    output_path(request, "output").write_text(generated.text, encoding="utf-8")
    return {
        "prompt_tokens": generated.prompt_tokens,
        "completion_tokens": generated.completion_tokens,
        "finish_reason": generated.finish_reason,
        "device": device,
    }
