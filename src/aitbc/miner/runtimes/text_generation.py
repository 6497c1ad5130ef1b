"""`text-generation`: the prompt in, the generated text in `result.txt`, token counts in `output.json`.

Two backends: Hugging Face transformers from local model folders (`--model NAME=PATH`), and an Ollama
server (`--ollama-url`). Params: `max_tokens`, `temperature` (0 = greedy), `top_p`, `seed`."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.generation_params import Generated, GenerationParams
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeResult, RuntimeUnavailable
from aitbc.miner.runtimes.models import is_sentence_transformer, offline, pick_device
from aitbc.miner.runtimes.ollama_backend import OllamaBackend, ollama_models

if TYPE_CHECKING:
    from aitbc.miner.runtimes.transformers_backend import TransformersBackend


class LocalModel:
    """A transformers model folder; the library is imported (seconds) and the model loaded at first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._backend: TransformersBackend | None = None
        self._lock = threading.Lock()

    def generate(self, context: JobContext, prompt: str, params: GenerationParams, device: str) -> Generated:
        with self._lock:
            if self._backend is None:
                from aitbc.miner.runtimes.transformers_backend import TransformersBackend

                self._backend = TransformersBackend(self.folder)
            backend = self._backend
        return backend.generate(context, prompt, params, device)


class TextGenerationRuntime:
    name = "text-generation"

    def __init__(self, local: dict[str, LocalModel], remote: dict[str, OllamaBackend]) -> None:
        self._local = local
        self._remote = remote

    @classmethod
    def create(cls, config: MinerConfig) -> TextGenerationRuntime:
        local: dict[str, LocalModel] = {}
        folders = {n: p for n, p in config.models.items() if not is_sentence_transformer(p)}
        if folders:
            if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
                raise ImportError("transformers and torch are not installed")
            offline()
            local = {name: LocalModel(folder) for name, folder in folders.items()}
        remote: dict[str, OllamaBackend] = {}
        if config.ollama_url:
            remote = {name: OllamaBackend(config.ollama_url, name) for name in ollama_models(config.ollama_url)}
        if not local and not remote:
            raise RuntimeUnavailable("no text-generation model: give --model NAME=PATH or --ollama-url")
        return cls(local, remote)

    def models(self) -> list[str]:
        return sorted({*self._local, *self._remote})

    async def close(self) -> None:
        return None

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
            device = pick_device(context.device)
            context.reporter.line("stdout", f"generating up to {params.max_tokens} tokens with {name} on {device}")
            generated: Generated = await asyncio.to_thread(self._local[name].generate, context, prompt, params, device)
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
