"""`command`: run the job's script with bash in a fresh working folder, under limits, in a scrubbed
environment. Opt-in on the miner (`--allow-command`): it runs other people's code.

Script protocol: a stdout line `AITBC_PROGRESS=<0-100>` reports progress; the main output goes to
`$AITBC_RESULT_FILE` (else result.txt is the script's stdout, less the progress lines); extra files go to
`$AITBC_ARTIFACTS_DIR`. The input is the script itself, or `{"script": …, "files": {name: text}}`; an
uploaded input file lands in the working folder (and is the script when there is no inline one).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from aitbc.domain.job import FailureReason
from aitbc.miner.config import CommandLimits
from aitbc.miner.process import run_process
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeResult
from aitbc.miner.runtimes.job_user import JobUser, copy_regular_file, copy_tree
from aitbc.miner.stop import StopReason

PROGRESS_LINE = re.compile(r"^\s*AITBC_PROGRESS=(\d+(?:\.\d+)?)\s*(.*)$")
SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9._\-]+$")
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
SCRIPT_NAME = ".aitbc-job.sh"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Applied by bash's own `ulimit` before it runs the script: hard limits the job cannot raise again.
LIMITS_WRAPPER = (
    'ulimit -H -S -t "$1" && ulimit -H -S -v "$2" && ulimit -H -S -f "$3" && ulimit -H -S -n "$4" && exec bash "$5"'
)


class CommandRuntime:
    name = "command"

    def __init__(self, limits: CommandLimits, kill_grace_seconds: float = 1.0, user: JobUser | None = None) -> None:
        self._limits = limits
        self._kill_grace = kill_grace_seconds
        self._user = user

    def models(self) -> list[str]:
        return []

    async def close(self) -> None:
        return None

    def _script(self, context: JobContext) -> Path:
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
            (context.work_dir / name).write_text(str(content))
        if isinstance(value, str) and value.strip():
            script = context.work_dir / SCRIPT_NAME
            script.write_text(value if value.endswith("\n") else value + "\n")
            return script
        if value is None and context.input_path is not None:
            return context.input_path
        raise JobFailed("a command job's input is the script to run: give it inline or as an uploaded file")

    def _environment(self, context: JobContext, result_file: Path, artifacts_dir: Path) -> dict[str, str]:
        assignment = context.assignment
        environment = {
            "PATH": SAFE_PATH,
            "HOME": str(context.work_dir),
            "TMPDIR": str(context.work_dir / "tmp"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "AITBC_JOB_ID": assignment.job_id,
            "AITBC_ATTEMPT": str(assignment.attempt),
            "AITBC_WORK_DIR": str(context.work_dir),
            "AITBC_RESULT_FILE": str(result_file),
            "AITBC_ARTIFACTS_DIR": str(artifacts_dir),
            "AITBC_PARAMS": json.dumps(assignment.params),
        }
        if context.input_path is not None:
            environment["AITBC_INPUT_FILE"] = str(context.input_path)
        extra = assignment.params.get("env") or {}
        if not isinstance(extra, dict):
            raise JobFailed("params.env must be an object of NAME: value")
        for name, value in extra.items():
            if not ENV_NAME.match(str(name)) or str(name).startswith("AITBC_") or name in environment:
                raise JobFailed(f"params.env may not set {name!r}")
            environment[str(name)] = str(value)
        return environment

    def _limits_argv(self, context: JobContext, script: Path) -> list[str]:
        limits = self._limits
        cpu_seconds = limits.cpu_seconds or context.assignment.timeout_seconds
        return [
            "bash",
            "-c",
            LIMITS_WRAPPER,
            "aitbc-limits",
            str(max(1, int(cpu_seconds))),
            str(limits.memory_mb * 1024),  # KiB
            str(limits.file_size_mb * 1024),  # 1024-byte blocks
            str(limits.open_files),
            str(script),
        ]

    async def run(self, context: JobContext) -> RuntimeResult:
        script = self._script(context)
        (context.work_dir / "tmp").mkdir(exist_ok=True)
        result_file, artifacts_dir = context.package.result_file, context.package.artifacts_dir
        argv = self._limits_argv(context, script)
        if self._user is not None:  # the job writes into folders of its own; the miner copies from them after
            output = context.work_dir.parent / "output"
            result_file, artifacts_dir = output / "result.txt", output / "artifacts"
            artifacts_dir.mkdir(parents=True)
            self._user.hand_over(context.work_dir, output)
            argv = self._user.wrap(argv)
        environment = self._environment(context, result_file, artifacts_dir)
        # stdout less the progress lines: result.txt when the script writes no $AITBC_RESULT_FILE (on disk, not
        # in memory, however much the script prints).
        stdout_result = (context.work_dir.parent / "stdout-result.txt").open("w", encoding="utf-8")

        def on_stdout(line: str) -> None:
            context.reporter.line("stdout", line)
            match = PROGRESS_LINE.match(line)
            if match:
                context.reporter.progress(float(match[1]), match[2].strip() or None)
            elif not stdout_result.closed:
                stdout_result.write(line + "\n")

        def on_stderr(line: str) -> None:
            context.reporter.line("stderr", line)

        try:
            outcome = await run_process(
                argv,
                cwd=context.work_dir,
                env=environment,
                stop=context.stop,
                deadline=context.deadline,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                kill_grace_seconds=self._kill_grace,
            )
        finally:
            stdout_result.close()
        if self._user is not None:
            copy_regular_file(result_file, context.package.result_file)
            copy_tree(artifacts_dir, context.package.artifacts_dir)
        _settle_result(context.package.result_file, Path(stdout_result.name))
        usage = {"wall_seconds": round(outcome.wall_seconds, 3)}
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
        return f"the script was killed by signal {-exit_code} (a limit on CPU time, memory or file size?)"
    if exit_code in (137, 152, 153):
        return f"the script exited with code {exit_code} (killed: a limit on CPU time or file size?)"
    return f"the script exited with code {exit_code}"
