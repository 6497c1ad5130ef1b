"""`command`: run the job's script with bash in the job sandbox (see `aitbc.miner.sandbox`), under the job's
limits. Opt-in on the miner (`--allow-command`): it runs other people's code.

Script protocol (the README's "Command jobs"): a stdout line `AITBC_PROGRESS=<0-100> [message]` reports progress
(kept in logs/stdout.log, not sent as a live log line); the main output goes to
`$AITBC_RESULT_FILE` (else result.txt is the script's stdout, less the progress lines); extra files go to
`$AITBC_ARTIFACTS_DIR`. The input is the script itself, or `{"script": …, "files": {name: text}}`; an
uploaded input file lands in the working folder (and is the script when there is no inline one).

Inside the sandbox the job's folder is `/job`: `/job/work` (its working folder and HOME, the script and input
files), `/job/output` (result.txt and artifacts/), `/job/tmp` (also at /tmp). It is a scratch folder outside
the miner's own (0700) folders; after the job the miner copies result.txt and the artifacts out of it, regular
files only and never following a link, and removes it.
"""

from __future__ import annotations

import asyncio
import errno
import json
import re
import shutil
import stat
from pathlib import Path
from typing import Any, ClassVar

from aitbc.domain.job import FailureReason
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeResult
from aitbc.miner.runtimes.job_user import copy_regular_file, copy_tree
from aitbc.miner.sandbox import Mount, SandboxSpec, gpu_devices, gpu_environment
from aitbc.miner.sandboxed_run import SAFE_PATH, Isolation, run_in_sandbox
from aitbc.miner.stop import StopReason

PROGRESS_LINE = re.compile(r"^\s*AITBC_PROGRESS=(\d+(?:\.\d+)?)\s*(.*)$")
SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9._\-]+$")
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
SCRIPT_NAME = ".aitbc-job.sh"
JOB_ROOT = "/job"
WORK, OUTPUT, TMP = "work", "output", "tmp"
# The environment every script gets (`_environment`): params.env may not set these, nor any AITBC_ name.
OWN_ENVIRONMENT = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")

# The script (non-blank), or {"script": …, "files": {name: text}}; with an uploaded file, `script` may be left
# out (the file is the script). What `_script` takes, and nothing else.
INPUT_SCHEMA: dict[str, Any] = {
    "type": ["string", "object"],
    "pattern": r"\S",
    "properties": {
        "script": {"type": ["string", "null"], "description": "the bash script to run"},
        "files": {
            "type": ["object", "null"],
            "propertyNames": {"pattern": SAFE_FILE_NAME.pattern, "not": {"enum": [".", ".."]}},
            "additionalProperties": {"type": "string"},
            "description": "files written into the working folder before the script runs: name → text",
        },
    },
    "additionalProperties": False,
    "description": "the bash script, or an object of the script and the files it reads",
}
# The script reads every key from $AITBC_PARAMS, so any key is allowed; `env` is what the runtime reads itself.
PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "env": {
            "type": ["object", "null"],
            "propertyNames": {
                "pattern": ENV_NAME.pattern,
                "not": {"anyOf": [{"pattern": "^AITBC_"}, {"enum": list(OWN_ENVIRONMENT)}]},
            },
            "additionalProperties": {"type": ["string", "number"]},
            "description": "environment variables for the script: NAME → value",
        }
    },
}


class CommandRuntime:
    name = "command"
    input_schema: ClassVar[dict[str, Any]] = INPUT_SCHEMA
    params_schema: ClassVar[dict[str, Any]] = PARAMS_SCHEMA

    def __init__(self, isolation: Isolation, kill_grace_seconds: float = 1.0) -> None:
        self._isolation = isolation
        self._kill_grace = kill_grace_seconds

    def models(self) -> list[str]:
        return []

    async def close(self) -> None:
        self._isolation.close()

    def _script(self, context: JobContext, work: Path) -> str:
        """Write the script and input files into the job's folder; the script's path inside the sandbox."""
        value = context.assignment.input
        files: dict[str, object] = {}
        if isinstance(value, dict):
            files = value.get("files") or {}
            value = value.get("script")
            if not isinstance(files, dict):
                raise JobFailed("'files' must map file names to their text")
        for name, content in files.items():
            if not SAFE_FILE_NAME.match(name) or name in (".", ".."):
                raise JobFailed(f"invalid input file name {name!r}: letters, digits, '.', '_' and '-' only")
            (work / name).write_text(str(content))
        if context.input_path is not None:
            try:
                shutil.copyfile(context.input_path, work / context.input_path.name)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                limit = self._isolation.limits.disk_mb
                raise JobFailed(f"the job's input file does not fit in its limit of {limit} MiB of disk") from None
        if isinstance(value, str) and value.strip():
            (work / SCRIPT_NAME).write_text(value if value.endswith("\n") else value + "\n")
            return f"{JOB_ROOT}/{WORK}/{SCRIPT_NAME}"
        if value is None and context.input_path is not None:
            return f"{JOB_ROOT}/{WORK}/{context.input_path.name}"
        raise JobFailed("a command job's input is the script to run: give it inline or as an uploaded file")

    def _environment(self, context: JobContext) -> dict[str, str]:
        """Everything the script's environment holds: nothing of the miner's (bwrap starts from an empty one)."""
        assignment = context.assignment
        environment = {
            "PATH": SAFE_PATH,
            "HOME": f"{JOB_ROOT}/{WORK}",
            "TMPDIR": "/tmp",  # noqa: S108 - the job's own /tmp, its folder's tmp/ inside the sandbox
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "AITBC_JOB_ID": assignment.job_id,
            "AITBC_ATTEMPT": str(assignment.attempt),
            "AITBC_WORK_DIR": f"{JOB_ROOT}/{WORK}",
            "AITBC_RESULT_FILE": f"{JOB_ROOT}/{OUTPUT}/result.txt",
            "AITBC_ARTIFACTS_DIR": f"{JOB_ROOT}/{OUTPUT}/artifacts",
            "AITBC_PARAMS": json.dumps(assignment.params),
            **(gpu_environment(context.gpus) if context.gpus else {}),
        }
        if context.input_path is not None:
            environment["AITBC_INPUT_FILE"] = f"{JOB_ROOT}/{WORK}/{context.input_path.name}"
        extra = assignment.params.get("env") or {}
        if not isinstance(extra, dict):
            raise JobFailed("params.env must be an object of NAME: value")
        for name, value in extra.items():
            if not ENV_NAME.match(str(name)) or str(name).startswith("AITBC_") or name in environment:
                raise JobFailed(f"params.env may not set {name!r}")
            environment[str(name)] = str(value)
        return environment

    def _cpu_seconds(self, context: JobContext) -> int:
        return max(1, int(self._isolation.limits.cpu_seconds or context.assignment.timeout_seconds))

    async def run(self, context: JobContext) -> RuntimeResult:
        scratch = self._isolation.scratch
        folder = await asyncio.to_thread(scratch.create, self._isolation.limits.disk_mb)
        try:
            return await self._run_in(folder, context)
        finally:
            await asyncio.to_thread(scratch.remove, folder)

    async def _run_in(self, folder: Path, context: JobContext) -> RuntimeResult:
        for name in (WORK, TMP, f"{OUTPUT}/artifacts"):
            (folder / name).mkdir(parents=True)
        script = self._script(context, folder / WORK)
        environment = self._environment(context)
        if self._isolation.user is not None:
            self._isolation.user.give(folder)
        spec = SandboxSpec(
            argv=["bash", script],
            mounts=[Mount(folder, JOB_ROOT, writable=True), Mount(folder / TMP, "/tmp", writable=True)],  # noqa: S108
            environment=environment,
            cwd=f"{JOB_ROOT}/{WORK}",
            network=self._isolation.network,
            devices=gpu_devices(context.gpus) if context.gpus else (),
        )
        # stdout less the progress lines: result.txt when the script writes no $AITBC_RESULT_FILE (on disk, not
        # in memory, however much the script prints).
        stdout_result = (context.work_dir.parent / "stdout-result.txt").open("w", encoding="utf-8")

        def on_stdout(line: str) -> None:
            match = PROGRESS_LINE.match(line)
            context.reporter.line("stdout", line, live=match is None)  # progress drives the bar, not the log
            if match:
                context.reporter.progress(float(match[1]), match[2].strip() or None)
            elif not stdout_result.closed:
                stdout_result.write(line + "\n")

        def on_stderr(line: str) -> None:
            context.reporter.line("stderr", line)

        try:
            sandboxed = await run_in_sandbox(
                self._isolation,
                folder,
                spec,
                cpu_seconds=self._cpu_seconds(context),
                stop=context.stop,
                deadline=context.deadline,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                kill_grace_seconds=self._kill_grace,
            )
        finally:
            stdout_result.close()
        # Every process of the job is gone by now: nothing can swap a file for a link while the miner copies.
        output = folder / OUTPUT
        if _is_real_folder(output):
            copy_regular_file(output / "result.txt", context.package.result_file)
            if _is_real_folder(output / "artifacts"):
                await asyncio.to_thread(copy_tree, output / "artifacts", context.package.artifacts_dir)
        _settle_result(context.package.result_file, Path(stdout_result.name))
        outcome = sandboxed.process
        usage = {"wall_seconds": round(outcome.wall_seconds, 3)}
        if sandboxed.limit is not None:
            context.reporter.line("stderr", f"[aitbc] {sandboxed.limit}")
            return RuntimeResult(
                exit_code=outcome.exit_code, failure=FailureReason.RUNTIME_ERROR, message=sandboxed.limit, usage=usage
            )
        if outcome.stopped is StopReason.TIMEOUT:
            return RuntimeResult(
                exit_code=outcome.exit_code,
                failure=FailureReason.TIMEOUT,
                message=f"the script ran past the job's timeout of {context.assignment.timeout_seconds} s",
                usage=usage,
            )
        if outcome.stopped is None and outcome.exit_code != 0:
            return RuntimeResult(
                exit_code=outcome.exit_code,
                failure=FailureReason.RUNTIME_ERROR,
                message=_exit_message(outcome.exit_code),
                usage=usage,
            )
        return RuntimeResult(exit_code=outcome.exit_code, usage=usage)


def _is_real_folder(path: Path) -> bool:
    """A folder, not a link to one (the job could have replaced output/ with a link to a folder of the host)."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _settle_result(result: Path, stdout_copy: Path) -> None:
    """result.txt is the regular file the script wrote to $AITBC_RESULT_FILE, else its stdout; anything else
    it left at that path (a symlink, a folder) is removed, never followed."""
    if result.is_symlink() or (result.exists() and not result.is_file()):
        if result.is_dir() and not result.is_symlink():
            shutil.rmtree(result)
        else:
            result.unlink()
    if result.exists():
        stdout_copy.unlink()
    else:
        stdout_copy.replace(result)


def _exit_message(exit_code: int) -> str:
    if exit_code < 0:
        return f"the script was killed by signal {-exit_code}"
    if exit_code > 128:
        return f"the script exited with code {exit_code} (killed by signal {exit_code - 128})"
    return f"the script exited with code {exit_code}"
