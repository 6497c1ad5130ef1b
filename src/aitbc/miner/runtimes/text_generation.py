"""`text-generation`: the prompt in, the generated text in `result.txt`, token counts in `output.json`.

Two backends: Hugging Face transformers from local model folders (`--model NAME=PATH`), run in the
sandboxed AI worker (`aitbc.miner.worker`) and kept warm across jobs; and an Ollama server
(`--ollama-url`), which the miner talks to itself (the model runs in the operator's server, not here).
Params: `max_tokens`, `temperature` (0 = greedy), `top_p`, `seed`."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, ClassVar

from aitbc.domain.job import FailureReason
from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.generation_params import PARAMS_SCHEMA, Generated, GenerationParams
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeResult, RuntimeUnavailable
from aitbc.miner.runtimes.models import is_sentence_transformer
from aitbc.miner.runtimes.ollama_backend import OllamaBackend, ollama_models
from aitbc.miner.worker import messages
from aitbc.miner.worker.model_cache import ModelCache
from aitbc.miner.worker.pool import WorkerPool, WorkerSettings

PROMPT_FILE = "prompt.txt"
TEXT_FILE = "result.txt"
FINISH_REASONS = ("stop", "length", "canceled")


class TextGenerationRuntime:
    name = "text-generation"
    # The prompt, as text (an uploaded file is read as text too); `params`: the sampling parameters.
    input_schema: ClassVar[dict[str, Any]] = {"type": "string", "minLength": 1, "description": "the prompt"}
    params_schema: ClassVar[dict[str, Any]] = PARAMS_SCHEMA

    def __init__(self, local: dict[str, Path], remote: dict[str, OllamaBackend], pool: WorkerPool | None) -> None:
        self._local = local
        self._remote = remote
        self.pool = pool

    @classmethod
    def create(cls, config: MinerConfig, cache: ModelCache | None = None) -> TextGenerationRuntime:
        """`cache`: the miner's model cache, shared with its other runtimes (else one of its own)."""
        local = {name: folder for name, folder in config.models.items() if not is_sentence_transformer(folder)}
        pool = None
        if local:
            if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
                raise ImportError("transformers and torch are not installed")
            pool = WorkerPool(WorkerSettings.for_miner(config, cls.name, list(local.values()), cache))
        remote: dict[str, OllamaBackend] = {}
        if config.ollama_url:
            remote = {name: OllamaBackend(config.ollama_url, name) for name in ollama_models(config.ollama_url)}
        if not local and not remote:
            raise RuntimeUnavailable("no text-generation model: give --model NAME=PATH or --ollama-url")
        return cls(local, remote, pool)

    def models(self) -> list[str]:
        return sorted({*self._local, *self._remote})

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def run(self, context: JobContext) -> RuntimeResult:
        served = self.models()
        name = context.assignment.model or (served[0] if len(served) == 1 else None)
        if name is None or name not in served:
            raise JobFailed(f"model {name!r} is not served here (served: {', '.join(served)})")
        prompt = context.input_text()
        if not prompt:
            raise JobFailed("a text-generation job's input is its prompt: it is empty")
        params = GenerationParams.from_params(context.assignment.params)
        if name in self._local:
            generated = await self._generate_locally(context, name, prompt, params)
        else:
            context.reporter.line("stdout", f"generating up to {params.max_tokens} tokens with {name} on Ollama")
            generated = await self._remote[name].generate(context, prompt, params)
            context.package.result_file.write_text(generated.text)
        counts = generated.counts()
        context.reporter.line(
            "stdout",
            f"{counts['completion_tokens']} tokens generated ({generated.finish_reason}); "
            f"{counts['prompt_tokens']} in the prompt",
        )
        return RuntimeResult(
            exit_code=0,
            output={"tokens": counts, "finish_reason": generated.finish_reason},
            usage=dict(counts),
        )

    async def _generate_locally(
        self, context: JobContext, name: str, prompt: str, params: GenerationParams
    ) -> Generated:
        """In the worker; its text comes back as a file, copied into the package without following a link."""
        assert self.pool is not None
        async with self.pool.worker(context.gpus) as worker:
            worker.exchange.put(PROMPT_FILE, prompt.encode("utf-8"))
            result = await worker.run(
                {
                    "kind": messages.GENERATE,
                    "name": name,
                    "model": str(self._local[name]),
                    "device": context.device,
                    "params": dataclasses.asdict(params),
                    "prompt": PROMPT_FILE,
                    "output": TEXT_FILE,
                },
                context,
            )
            if not worker.exchange.copy_output(TEXT_FILE, context.package.result_file):
                raise JobFailed("the text-generation worker wrote no text", FailureReason.RUNTIME_ERROR)
        return Generated(
            text="",
            prompt_tokens=_count(result, "prompt_tokens"),
            completion_tokens=_count(result, "completion_tokens"),
            finish_reason=_finish_reason(result),
        )


def _count(result: dict[str, Any], key: str) -> int:
    value = result.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise JobFailed(f"the text-generation worker gave no {key}", FailureReason.RUNTIME_ERROR)
    return value


def _finish_reason(result: dict[str, Any]) -> str:
    reason = result.get("finish_reason")
    if reason not in FINISH_REASONS:
        raise JobFailed("the text-generation worker gave no finish reason", FailureReason.RUNTIME_ERROR)
    return str(reason)
