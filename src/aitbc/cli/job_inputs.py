"""What a job's `input` means on the command line and in a jobs file: a file to upload, JSON, or text; and
the jobs files of `batch-submit` (JSON) and `submit-batch` (YAML) read into the jobs of one batch."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aitbc.domain.job import is_url
from aitbc.protocol.batches import MAX_BATCH_JOBS
from aitbc.sdk.calls import SubmitOptions

# A jobs file's fields: the body of POST /v1/jobs by its names, `timeout` as `submit --timeout` says it, and
# `output`: a folder to download the job's results into once it ends (as `submit --output`).
_BODY_FIELDS = frozenset(SubmitOptions.__optional_keys__)
_ALIASES = {"timeout": "timeout_seconds", "queue_timeout": "queue_timeout_seconds"}
FIELDS = sorted(_BODY_FIELDS | set(_ALIASES) | {"output", "input_text"})


def json_object(value: str, option: str) -> dict[str, Any]:
    """The JSON object an option holds (`--workflow-config '{"temperature": 0.8}'`); ValueError naming the
    option if it is not one."""
    try:
        parsed = json.loads(value)
    except ValueError as error:
        raise ValueError(f"{option} is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{option} must be a JSON object, like '{{\"temperature\": 0.8}}'")
    return parsed


# Text that names a file rather than saying something: one word with a folder in it, a leading ./ ../ ~/ or /,
# or a file extension. Sent as text it would reach the job as the name of a file it does not have.
_PATH_LIKE = re.compile(r"^(?:\.{0,2}/|~/)\S*$|^[^\s/]*/\S+$|^[^\s/]+\.[A-Za-z][A-Za-z0-9]{0,7}$")


def parse_input(value: str, as_text: bool = False, option: str = "--input") -> tuple[Any, Path | None]:
    """A path that exists is uploaded as a file; text that parses as a JSON object or list is JSON; anything
    else is plain text — except what only looks like a path (no such file: a typo, say) or is a URL, which is
    refused with what to do instead, rather than sent as text that a job then runs on and is billed for.
    `as_text`: the value is text, whatever it looks like."""
    if as_text:
        return value, None
    candidate = Path(value).expanduser()
    if len(value) < 4096 and "\n" not in value and candidate.is_file():
        return None, candidate
    stripped = value.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped), None
        except ValueError:
            pass
    if is_url(stripped):
        raise ValueError(
            f"{option} {stripped} is a URL: miners do not fetch inputs from the network. Download it and pass the "
            f"file ({option} ./file), or send the URL itself as text with {option}-text"
        )
    if _PATH_LIKE.match(stripped) and not candidate.exists():
        raise ValueError(
            f"{option} {stripped}: no such file (looked for {candidate.absolute()}). Give a file that exists, or "
            f"send the words themselves as text with {option}-text"
        )
    if candidate.is_dir() and _PATH_LIKE.match(stripped):
        raise ValueError(f"{option} {stripped} is a folder: give one file (zip or tar a folder first)")
    return value, None


@dataclass
class BatchJob:
    """One job of a jobs file: what to submit, the file to upload as its input first, where its results go."""

    index: int
    options: dict[str, Any]
    upload: Path | None = None
    output: Path | None = None
    label: str = field(default="")


class JobsFileError(ValueError):
    """A jobs file that cannot be a batch; the message names the file and the item."""


def read_jobs_file(path: Path) -> list[BatchJob]:
    """The jobs of a JSON or YAML file: a list of jobs, or `{"jobs": [...]}`. A relative input path is taken
    from the file's folder when it exists there, else from the current folder (as `submit --input`); a relative
    output folder from the current folder (as `submit --output`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise JobsFileError(f"cannot read {path}: {error}") from error
    try:
        loaded = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise JobsFileError(f"{path} is not valid {kind}: {error}") from error
    jobs = loaded.get("jobs") if isinstance(loaded, dict) else loaded
    if not isinstance(jobs, list) or not jobs:
        raise JobsFileError(f"{path} must hold a list of jobs, or `jobs:` with a list under it")
    if len(jobs) > MAX_BATCH_JOBS:
        raise JobsFileError(f"{path} has {len(jobs)} jobs; a batch takes at most {MAX_BATCH_JOBS}: split the file")
    return [_job(path, index, item) for index, item in enumerate(jobs)]


def _job(path: Path, index: int, item: Any) -> BatchJob:
    where = f"{path}: item {index}"
    if not isinstance(item, dict):
        raise JobsFileError(f"{where} must be a mapping of fields ({', '.join(FIELDS)}), not {item!r}")
    unknown = sorted(str(name) for name in item if name not in FIELDS)
    if unknown:
        raise JobsFileError(f"{where} has an unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
    if "input" in item and "input_text" in item:
        raise JobsFileError(f"{where} has both input and input_text: give one")
    options = {
        _ALIASES.get(str(name), str(name)): value
        for name, value in item.items()
        if name not in ("output", "input_text")
    }
    upload = None
    if "input_text" in item:
        options["input"] = item["input_text"]  # text as it is, whatever it looks like
    elif isinstance(options.get("input"), str):
        beside = path.parent / str(options["input"])
        if "\n" not in options["input"] and len(options["input"]) < 4096 and beside.is_file():
            options["input"], upload = None, beside
        else:
            try:
                options["input"], upload = parse_input(options["input"], option="input")
            except ValueError as error:
                raise JobsFileError(f"{where}: {error}") from None
    output = item.get("output")
    if output is not None and not isinstance(output, str):
        raise JobsFileError(f"{where}: output must be a folder path, not {output!r}")
    label = str(options.get("model") or options.get("type") or "-")
    return BatchJob(index, options, upload, Path(output).expanduser() if output else None, label)
