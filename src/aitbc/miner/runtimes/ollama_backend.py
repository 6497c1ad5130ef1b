"""Text generation through an Ollama server the miner points at (`--ollama-url`): its models come from
`/api/tags`; a job streams from `/api/generate`, and closing the stream is how a cancel stops it."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from aitbc.concurrency import INTERRUPTED, unless
from aitbc.miner.runtimes.generation_params import Generated, GenerationParams
from aitbc.miner.runtimes.interface import JobContext, JobFailed

log = logging.getLogger(__name__)
TAGS_TIMEOUT_SECONDS = 5.0


def ollama_models(url: str) -> list[str]:
    """The models an Ollama server has; none (with a warning) when it cannot be reached."""
    try:
        answer = httpx.get(f"{url.rstrip('/')}/api/tags", timeout=TAGS_TIMEOUT_SECONDS)
        answer.raise_for_status()
        return sorted(str(m["name"]) for m in answer.json().get("models", []) if m.get("name"))
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        log.warning("cannot list the models of the Ollama server at %s: %s", url, error)
        return []


class OllamaBackend:
    def __init__(self, url: str, model: str) -> None:
        self.url = url.rstrip("/")
        self.model = model

    async def generate(self, context: JobContext, prompt: str, params: GenerationParams) -> Generated:
        options: dict[str, Any] = {"num_predict": params.max_tokens, "temperature": params.temperature}
        options["top_p"] = params.top_p
        if params.seed is not None:
            options["seed"] = params.seed
        body = {"model": self.model, "prompt": prompt, "stream": True, "options": options}
        generated = await unless(self._stream(context, body, params), context.stop.wait())
        if generated is INTERRUPTED:  # stopped: the stream was closed, which makes Ollama stop generating
            return Generated(text="", prompt_tokens=0, completion_tokens=0, finish_reason="canceled")
        return generated

    async def _stream(self, context: JobContext, body: dict[str, Any], params: GenerationParams) -> Generated:
        pieces: list[str] = []
        produced = 0
        final: dict[str, Any] = {}
        timeout = httpx.Timeout(30.0, read=max(30.0, context.remaining_seconds))
        async with (
            httpx.AsyncClient(timeout=timeout) as http,
            http.stream("POST", f"{self.url}/api/generate", json=body) as answer,
        ):
            if not answer.is_success:
                detail = (await answer.aread()).decode(errors="replace")[:500]
                raise JobFailed(f"Ollama answered HTTP {answer.status_code}: {detail}")
            async for line in answer.aiter_lines():
                if not line.strip():
                    continue
                chunk = json.loads(line)
                if chunk.get("error"):
                    raise JobFailed(f"Ollama: {chunk['error']}")
                if chunk.get("response"):
                    pieces.append(chunk["response"])
                    produced += 1
                    context.reporter.progress(100 * produced / params.max_tokens, f"{produced} tokens")
                if chunk.get("done"):
                    final = chunk
                    break
        return Generated(
            text="".join(pieces),
            prompt_tokens=int(final.get("prompt_eval_count") or 0),
            completion_tokens=int(final.get("eval_count") or produced),
            finish_reason=str(final.get("done_reason") or "stop"),
        )
