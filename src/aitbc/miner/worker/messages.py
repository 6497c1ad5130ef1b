"""The protocol between the miner and its AI worker: one JSON object per line, on the worker's stdin (the
miner's requests) and on its stdout (the worker's answers). Each object names its `kind`.

Miner → worker: `embed` or `generate` (one job: model folder, device, input and output file names in the
exchange folder, params), then at most one `cancel` (stop at the next batch or token); and at any time
`unload` (the model folders to drop: the miner's model cache makes room), applied at once and not answered.
Worker → miner: `ready` once at start, then per job at most one `model` (its model is ready: `warm`,
`load_seconds`, `size` in bytes), any number of `progress` and `log`, and exactly one `done` (with the
result) or `failed` (with a reason and a message), each with `models`: what the worker holds then
(folder → bytes)."""

from __future__ import annotations

import json
from typing import Any

# Requests
EMBED = "embed"
GENERATE = "generate"
CANCEL = "cancel"
UNLOAD = "unload"
# Answers
READY = "ready"
MODEL = "model"
PROGRESS = "progress"
LOG = "log"
DONE = "done"
FAILED = "failed"

# Inside the worker's sandbox: the exchange folder, with the job's input files and the worker's output files.
EXCHANGE = "/job"
INPUT_FOLDER = "input"
OUTPUT_FOLDER = "output"
MAX_LINE_BYTES = 64 * 1024 * 1024  # the longest line either side reads: a log line, a result, never a payload


class ProtocolError(Exception):
    """A line that is not a JSON object with a `kind`: the other side is broken, not the job."""


def encode(kind: str, **fields: Any) -> bytes:
    return (json.dumps({"kind": kind, **fields}, ensure_ascii=True) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as error:
        raise ProtocolError(f"not a JSON line: {str(line)[:200]!r}") from error
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        raise ProtocolError(f"not a message: {str(line)[:200]!r}")
    return message


def file_name(value: Any) -> str:
    """A file name inside the exchange's input or output folder: one plain name, never a path."""
    if not isinstance(value, str) or not value or "/" in value or value in (".", "..") or "\0" in value:
        raise ProtocolError(f"not a plain file name: {value!r}")
    return value


def held_models(value: Any) -> dict[str, int]:
    """A worker's `models`: model folder → bytes (anything else left out)."""
    if not isinstance(value, dict):
        return {}
    return {
        folder: size
        for folder, size in value.items()
        if isinstance(folder, str) and isinstance(size, int) and not isinstance(size, bool) and size >= 0
    }
