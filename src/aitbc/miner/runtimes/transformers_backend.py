"""Text generation with Hugging Face transformers from a local model folder (CPU, or the GPU when there).

It runs inside the AI worker (`aitbc.miner.worker`), never in the miner: a stopping criterion reports
progress token by token and ends the generation at the next token once the job must stop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

from aitbc.miner.runtimes.generation_params import Generated, GenerationParams

Progress = Callable[[float, str], None]
Stopped = Callable[[], bool]


class _Watch(StoppingCriteria):
    """Called after every generated token: report progress, and stop when the job must stop."""

    def __init__(self, progress: Progress, stopped: Stopped, prompt_length: int, max_tokens: int) -> None:
        self._progress = progress
        self._stopped = stopped
        self._prompt_length = prompt_length
        self._max_tokens = max_tokens

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        produced = int(input_ids.shape[-1]) - self._prompt_length
        self._progress(100 * produced / self._max_tokens, f"{produced} tokens")
        stop = self._stopped()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


class TransformersBackend:
    """A causal language model and its tokenizer, loaded from a local folder onto one device."""

    def __init__(self, folder: Path, device: str) -> None:
        self.folder = folder
        self.device = device
        tokenizer: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
        model.to(device)
        model.eval()
        self.tokenizer = tokenizer
        self.model = model

    def generate(self, prompt: str, params: GenerationParams, progress: Progress, stopped: Stopped) -> Generated:
        tokenizer, model, device = self.tokenizer, self.model, self.device
        encoded = tokenizer(prompt, return_tensors="pt").to(device)
        prompt_length = int(encoded["input_ids"].shape[-1])
        if params.seed is not None:
            torch.manual_seed(params.seed)
        options: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "do_sample": not params.greedy,
            "stopping_criteria": StoppingCriteriaList([_Watch(progress, stopped, prompt_length, params.max_tokens)]),
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        }
        if not params.greedy:
            options.update(temperature=params.temperature, top_p=params.top_p)
        with torch.inference_mode():
            output = model.generate(**encoded, **options)
        new_ids = output[0][prompt_length:]
        completion = int(new_ids.shape[-1])
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if stopped():
            reason = "canceled"
        elif completion and int(new_ids[-1]) in eos_ids:
            reason = "stop"
        else:
            reason = "length"
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        return Generated(text=text, prompt_tokens=prompt_length, completion_tokens=completion, finish_reason=reason)
