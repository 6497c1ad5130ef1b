"""The runtime plugin interface: what a runtime declares (its job type and models) and what it gets to run
one job (a fresh working folder, the package to fill, a reporter, a stop signal).

A runtime may declare what it takes, as JSON Schemas (draft 2020-12), in the class attributes `input_schema`
(the job's inline input) and `params_schema` (its params): the miner registers them, and the coordinator gives
it no job they refuse (see `aitbc.domain.runtime_schemas`). A runtime without them takes anything.

A runtime writes its main output to `package.result_file`, extra files under `package.artifacts_dir`, and
log lines through `reporter`; it returns a `RuntimeResult`, or raises `JobFailed` for a job it cannot run.
It must stop promptly once `stop` is requested (kill its processes, or leave its loop between steps).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aitbc.domain.job import FailureReason
from aitbc.domain.runtime_schemas import schema_problem
from aitbc.miner.package import PackageLayout
from aitbc.miner.reporter import JobReporter
from aitbc.miner.stop import StopSignal
from aitbc.miner.timings import JobTimings
from aitbc.protocol.miners import Assignment, RuntimeSchemaSpec

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """The job cannot be run as given (bad input or params, unknown model): it fails, it is not retried."""

    def __init__(self, message: str, reason: FailureReason = FailureReason.INVALID_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class RuntimeUnavailable(Exception):
    """The runtime cannot run on this machine (a package, a binary or a model is missing)."""


@dataclass
class JobContext:
    assignment: Assignment
    work_dir: Path
    package: PackageLayout
    reporter: JobReporter
    stop: StopSignal
    deadline: float  # time.monotonic() by which the job must end (its timeout)
    input_path: Path | None = None
    device: str = "cpu"
    gpus: tuple[int, ...] = ()  # the host indices of the GPUs the agent gave this job (its sandbox sees only those)
    timings: JobTimings = field(default_factory=JobTimings)  # a runtime with a model says when it is ready

    @property
    def remaining_seconds(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def input_text(self) -> str:
        """The job's input as text: the inline input, else the content of its input file."""
        value = self.assignment.input
        if isinstance(value, str):
            return value
        if value is None and self.input_path is not None:
            return self.input_path.read_text(encoding="utf-8", errors="replace")
        if value is None:
            raise JobFailed("this job needs an input")
        raise JobFailed("this job's input must be text")


@dataclass
class RuntimeResult:
    exit_code: int | None = 0
    failure: FailureReason | None = None
    message: str = ""
    output: dict[str, Any] = field(default_factory=dict)  # merged into output.json (e.g. token counts)
    usage: dict[str, Any] = field(default_factory=dict)


def declared_schemas(runtime: Runtime) -> RuntimeSchemaSpec | None:
    """The schemas `runtime` declares (`input_schema`, `params_schema`), or None when it declares neither or
    they are not usable JSON Schemas (a plugin's mistake: logged, and the runtime takes anything)."""
    input_schema = getattr(runtime, "input_schema", None)
    params_schema = getattr(runtime, "params_schema", None)
    if input_schema is None and params_schema is None:
        return None
    for part, schema in (("input_schema", input_schema), ("params_schema", params_schema)):
        problem = None if schema is None else schema_problem(schema)
        if problem is not None:
            log.warning("runtime %s: its %s is left out: %s", runtime.name, part, problem)
            return None
    return RuntimeSchemaSpec(input=input_schema, parameters=params_schema)


class Runtime(Protocol):
    name: str  # the job type it runs

    def models(self) -> list[str]:
        """The models it serves (empty: it runs any job of its type)."""
        ...

    async def run(self, context: JobContext) -> RuntimeResult: ...

    async def close(self) -> None: ...
