"""`reencode`: ffmpeg turns the job's input media file into the format of `params` (`format`, `codec`,
`audio_codec`, `video_bitrate`, `audio_bitrate`, `width`, `height`, `fps`, `sample_rate`). The output goes
to `artifacts/output.<ext>`, a JSON summary (from ffprobe) to `result.txt`; progress comes from ffmpeg's
own `-progress` output. Every parameter is checked against a strict pattern: no option can be injected.

ffprobe and ffmpeg parse a tenant's file, so both run the way a `command` job's script does
(`sandboxed_run`): in bubblewrap as the job's host user, in the job's cgroups, under the job's limits
(processes, memory, CPU, disk, open files) with the same watchdog and the same failure messages, never with
the network. The job's folder (a tmpfs of its disk size on a root miner) holds a copy of the input and is the
only job folder they see, at /job. They read plain media containers only, through the `file` protocol only
(`media_formats`): a playlist or list that names other files fails the job. What ffmpeg wrote is copied out
of the folder without following links, and the folder is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import re
import shutil
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from aitbc.domain.job import FailureReason
from aitbc.miner.config import JobLimits, MinerConfig
from aitbc.miner.process import LineHandler
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeResult, RuntimeUnavailable
from aitbc.miner.runtimes.job_user import copy_regular_file
from aitbc.miner.runtimes.media_formats import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    input_options,
    output_options,
    refused_input,
)
from aitbc.miner.sandbox import SYSTEM_FOLDERS, Mount, SandboxSpec
from aitbc.miner.sandboxed_run import SAFE_PATH, Isolation, SandboxOutcome, run_in_sandbox
from aitbc.miner.stop import StopReason, StopSignal

NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")
BITRATE = re.compile(r"^\d{1,6}[kKmM]?$")
SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,16}$")
PROBE_TIMEOUT_SECONDS = 30
PROBE_MEMORY_MB = 1024
PROBE_OUTPUT_CHARACTERS = 1_000_000
JOB_FOLDER = "/job"  # where the job's folder appears inside the sandbox
STDERR_TAIL_LINES = 20
PROBE_ENTRIES = "format=format_name,duration:stream=codec_type,codec_name,width,height,sample_rate"
INTEGER_LIMITS = {"width": 16384, "height": 16384, "fps": 1000, "sample_rate": 384000}


def _property(kinds: list[str], what: str, **checks: Any) -> dict[str, Any]:
    """A key of `params`: null or absent (ffmpeg's default), else one of `kinds` passing `checks`."""
    return {"type": [*kinds, "null"], **checks, "description": what}


# What `command_line` checks, key by key; it reads no other key. A bitrate may be a number (800000) or text.
PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "format": {"enum": list(OUTPUT_FORMATS), "description": "the output's muxer (default mp4)"},
        **{
            key: _property(["string"], f"ffmpeg's {what} encoder (libx264)", pattern=NAME.pattern)
            for key, what in (("codec", "video"), ("audio_codec", "audio"))
        },
        **{
            key: _property(
                ["string", "integer"], f"{what} bitrate: 800k, 2M", pattern=BITRATE.pattern, minimum=0, maximum=999999
            )
            for key, what in (("video_bitrate", "video"), ("audio_bitrate", "audio"))
        },
        **{
            key: _property(["integer"], key.replace("_", " "), minimum=1, maximum=high)
            for key, high in INTEGER_LIMITS.items()
        },
    },
    "additionalProperties": False,
}


class ReencodeRuntime:
    name = "reencode"
    # The media file is uploaded (input_file_id): an inline input is never read.
    input_schema: ClassVar[bool] = False
    params_schema: ClassVar[dict[str, Any]] = PARAMS_SCHEMA

    def __init__(
        self,
        ffmpeg: str,
        ffprobe: str,
        isolation: Isolation,
        kill_grace_seconds: float = 1.0,
        input_formats: Sequence[str] = INPUT_FORMATS,
    ) -> None:
        self._ffmpeg = ffmpeg
        self._ffprobe = ffprobe
        self._isolation = isolation
        self._kill_grace = kill_grace_seconds
        self._input_formats = tuple(input_formats)

    @staticmethod
    def tools() -> tuple[str, str]:
        """ffmpeg's and ffprobe's paths (RuntimeUnavailable, saying what to install, where they are missing)."""
        ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
        if ffmpeg is None or ffprobe is None:
            raise RuntimeUnavailable("ffmpeg and ffprobe are not on PATH (apt-get install ffmpeg)")
        return ffmpeg, ffprobe

    @classmethod
    def create(
        cls, config: MinerConfig, isolation: Isolation | None = None, input_formats: Sequence[str] = INPUT_FORMATS
    ) -> ReencodeRuntime:
        """With the miner's `isolation` (shared with its `command` runtime), else one of its own: never run
        ffmpeg on a tenant's file outside a sandbox."""
        ffmpeg, ffprobe = cls.tools()
        isolation = isolation or Isolation.for_miner(config)
        return cls(ffmpeg, ffprobe, isolation, config.kill_grace_seconds, input_formats)

    @property
    def isolation(self) -> Isolation:
        return self._isolation

    @property
    def limits(self) -> JobLimits:
        return self._isolation.limits

    def models(self) -> list[str]:
        return []

    async def close(self) -> None:
        self._isolation.close()

    def tool_spec(self, argv: Sequence[str], folder: Path) -> SandboxSpec:
        """What ffprobe or ffmpeg sees: the job's folder at /job, the read-only system, no network."""
        tool = argv[0]
        return SandboxSpec(
            argv=list(argv),
            mounts=[Mount(folder, JOB_FOLDER, writable=True)],
            environment={
                "PATH": SAFE_PATH,
                "HOME": JOB_FOLDER,
                "LANG": "C.UTF-8",
                # Where RLIMIT_AS caps memory (no memory cgroup) it counts reserved address space: glibc's
                # 64 MiB arena per thread would use up the limit on a many-core machine without using memory.
                "MALLOC_ARENA_MAX": "2",
            },
            cwd=JOB_FOLDER,
            network=False,
            readonly_paths=[tool] if _outside_system_folders(tool) else [],
        )

    async def run_tool(
        self,
        argv: Sequence[str],
        folder: Path,
        *,
        cpu_seconds: int,
        stop: StopSignal,
        deadline: float,
        on_stdout: LineHandler,
        on_stderr: LineHandler,
        limits: JobLimits | None = None,
    ) -> SandboxOutcome:
        """Run ffprobe or ffmpeg (or any argv, for tests) in `folder`'s sandbox, as a command job runs."""
        return await run_in_sandbox(
            self._isolation,
            folder,
            self.tool_spec(argv, folder),
            cpu_seconds=max(1, cpu_seconds),
            stop=stop,
            deadline=deadline,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            kill_grace_seconds=self._kill_grace,
            limits=limits,
        )

    def input_options(self) -> list[str]:
        """The whitelists placed before every input ffprobe or ffmpeg opens."""
        return input_options(self._input_formats)

    async def probe(self, scratch: Path, name: str, context: JobContext) -> dict[str, Any]:
        """ffprobe's JSON summary of `/job/<name>`, run in the sandbox under its own short timeout."""
        argv = [
            self._ffprobe,
            "-v",
            "error",
            *self.input_options(),
            "-show_entries",
            PROBE_ENTRIES,
            "-of",
            "json",
            f"{JOB_FOLDER}/{name}",
        ]
        stdout: list[str] = []
        stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

        room = [PROBE_OUTPUT_CHARACTERS]

        def collect(line: str) -> None:  # a file with a million streams must not fill the miner's memory
            if room[0] > 0:
                stdout.append(line)
                room[0] -= len(line) + 1

        stop = StopSignal()  # the probe's own timeout must not read as the job's
        forward = asyncio.create_task(_forward_stop(context.stop, stop))
        try:
            sandboxed = await self.run_tool(
                argv,
                scratch,
                cpu_seconds=PROBE_TIMEOUT_SECONDS,
                stop=stop,
                deadline=min(context.deadline, time.monotonic() + PROBE_TIMEOUT_SECONDS),
                on_stdout=collect,
                on_stderr=stderr.append,
                limits=replace(self.limits, memory_mb=min(PROBE_MEMORY_MB, self.limits.memory_mb)),
            )
        finally:
            forward.cancel()
        outcome, errors = sandboxed.process, "\n".join(stderr)
        if sandboxed.limit is not None:
            raise JobFailed(f"ffprobe was stopped reading the file: {sandboxed.limit}")
        if outcome.stopped is not None:
            if context.stop.requested:
                raise JobFailed(f"stopped ({context.stop.reason}) while ffprobe read the file")
            raise JobFailed(f"ffprobe took over {PROBE_TIMEOUT_SECONDS} s on the input")
        if outcome.exit_code != 0:
            if refused_input(errors):
                raise JobFailed(
                    "the input is not a plain media file: playlists and lists that name other files (HLS, DASH, "
                    f"concat) are refused; accepted containers: {', '.join(self._input_formats)} "
                    f"(ffprobe: {_last_line(errors)})"
                )
            raise JobFailed(f"the input is not a media file ffprobe can read: {errors[-300:]}")
        try:
            found: dict[str, Any] = json.loads("\n".join(stdout) or "{}")
        except json.JSONDecodeError:
            raise JobFailed("ffprobe's answer on the file was not JSON (or too long)") from None
        return found

    def _arguments(self, params: dict[str, Any], source: str, target: str, output_format: str) -> list[str]:
        def named(key: str) -> str | None:
            value = params.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or not NAME.match(value):
                raise JobFailed(f"params.{key} must be a short name like 'libx264', got {value!r}")
            return value

        def integer(key: str, high: int) -> int | None:
            value = params.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise JobFailed(f"params.{key} must be an integer from 1 to {high}")
            return value

        def bitrate(key: str) -> str | None:
            value = params.get(key)
            if value is None:
                return None
            if not BITRATE.match(str(value)):
                raise JobFailed(f"params.{key} must look like 800k or 2M, got {value!r}")
            return str(value)

        arguments = [self._ffmpeg, "-hide_banner", "-nostdin", "-y", *self.input_options(), "-i", source]
        if codec := named("codec"):
            arguments += ["-c:v", codec]
        if audio_codec := named("audio_codec"):
            arguments += ["-c:a", audio_codec]
        if rate := bitrate("video_bitrate"):
            arguments += ["-b:v", rate]
        if rate := bitrate("audio_bitrate"):
            arguments += ["-b:a", rate]
        width, height = integer("width", INTEGER_LIMITS["width"]), integer("height", INTEGER_LIMITS["height"])
        if width or height:
            arguments += ["-vf", f"scale={width or -2}:{height or -2}"]
        if fps := integer("fps", INTEGER_LIMITS["fps"]):
            arguments += ["-r", str(fps)]
        if sample_rate := integer("sample_rate", INTEGER_LIMITS["sample_rate"]):
            arguments += ["-ar", str(sample_rate)]
        # -progress opens its pipe directly, outside the protocol whitelist: no `pipe` protocol is allowed.
        return [*arguments, *output_options(output_format), "-progress", "pipe:1", "-nostats", target]

    def command_line(self, params: dict[str, Any], input_name: str) -> list[str]:
        """ffmpeg's arguments for a job (paths inside the sandbox), with `params` checked."""
        output_format = _output_format(params)
        target = f"{JOB_FOLDER}/{_output_name(output_format)}"
        return self._arguments(params, f"{JOB_FOLDER}/{input_name}", target, output_format)

    async def run(self, context: JobContext) -> RuntimeResult:
        source = context.input_path
        if source is None:
            raise JobFailed("a reencode job needs a media file as its input (aitbc client submit --input FILE)")
        input_name = "input" + (source.suffix if SAFE_SUFFIX.match(source.suffix) else "")
        params = context.assignment.params
        arguments = self.command_line(params, input_name)
        scratch = self._isolation.scratch
        folder = await asyncio.to_thread(scratch.create, self.limits.disk_mb)
        try:
            await asyncio.to_thread(self._place_input, source, folder / input_name)
            return await self._reencode(context, folder, input_name, arguments, _output_format(params))
        finally:
            await asyncio.to_thread(scratch.remove, folder)

    def _place_input(self, source: Path, target: Path) -> None:
        """A copy of the input the miner downloaded, in the job's folder (the job's disk), owned by its user."""
        try:
            copied = copy_regular_file(source, target)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            limit = self.limits.disk_mb
            raise JobFailed(f"the job's input file does not fit in its limit of {limit} MiB of disk") from None
        if not copied:
            raise JobFailed("the job's input is not a regular file")
        if self._isolation.user is not None:
            self._isolation.user.give(target)

    async def _reencode(
        self, context: JobContext, scratch: Path, input_name: str, arguments: list[str], output_format: str
    ) -> RuntimeResult:
        duration = float((await self.probe(scratch, input_name, context)).get("format", {}).get("duration") or 0)
        output_name = _output_name(output_format)
        stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

        def on_progress(line: str) -> None:
            key, _, value = line.partition("=")
            if key in ("out_time_us", "out_time_ms") and duration > 0 and value.strip().isdigit():
                context.reporter.progress(min(99.0, int(value) / 1e6 / duration * 100))
            elif key == "progress" and value == "end":
                context.reporter.progress(100)

        def on_stderr(line: str) -> None:
            stderr.append(line)
            context.reporter.line("stderr", line)

        sandboxed = await self.run_tool(
            arguments,
            scratch,
            cpu_seconds=int(self.limits.cpu_seconds or context.assignment.timeout_seconds),
            stop=context.stop,
            deadline=context.deadline,
            on_stdout=on_progress,
            on_stderr=on_stderr,
        )
        outcome, errors = sandboxed.process, "\n".join(stderr)
        usage = {"wall_seconds": round(outcome.wall_seconds, 3), "input_seconds": duration}
        target = context.package.artifacts_dir / output_name
        failed = outcome.stopped is None and outcome.exit_code != 0
        limit = sandboxed.limit or (self._limit_in_errors(errors, context) if failed else None)
        if limit is not None:  # the same message as a command job's, and what to ask for instead
            context.reporter.line("stderr", f"[aitbc] {limit}")
            return RuntimeResult(
                exit_code=outcome.exit_code,
                failure=FailureReason.RUNTIME_ERROR,
                message=f"{limit}: ffmpeg was stopped (ask for a smaller size, frame rate or bitrate)",
                usage=usage,
            )
        if outcome.stopped is not None:  # canceled or timed out: what ffmpeg wrote so far is the partial result
            copy_regular_file(scratch / output_name, target)
            failure = FailureReason.TIMEOUT if outcome.stopped is StopReason.TIMEOUT else None
            return RuntimeResult(exit_code=outcome.exit_code, failure=failure, usage=usage)
        if outcome.exit_code != 0:
            refused = refused_input(errors)
            return RuntimeResult(
                exit_code=outcome.exit_code,
                failure=FailureReason.INVALID_INPUT if refused else FailureReason.RUNTIME_ERROR,
                message=(
                    f"ffmpeg refused the input: it is not a plain media file ({_last_line(errors)})"
                    if refused
                    else f"ffmpeg exited with code {outcome.exit_code}: {_last_line(errors)} (see logs/stderr.log)"
                ),
                usage=usage,
            )
        probed = await self.probe(scratch, output_name, context)
        if not copy_regular_file(scratch / output_name, target):
            return RuntimeResult(
                exit_code=0,
                failure=FailureReason.RUNTIME_ERROR,
                message=f"ffmpeg left no regular file at {output_name}",
                usage=usage,
            )
        summary = {
            "file": f"artifacts/{output_name}",
            "format": output_format,
            "size": target.stat().st_size,
            "container": probed.get("format", {}).get("format_name"),
            "duration_seconds": float(probed.get("format", {}).get("duration") or 0),
            "streams": [
                {k: v for k, v in stream.items() if k in ("codec_type", "codec_name", "width", "height")}
                for stream in probed.get("streams", [])
            ],
        }
        context.package.result_file.write_text(json.dumps(summary, indent=2) + "\n")
        return RuntimeResult(exit_code=0, output={"media": summary}, usage=usage)

    def _limit_in_errors(self, errors: str, context: JobContext) -> str | None:
        """A limit ffmpeg itself reported hitting where no cgroup counted it (a miner without them): an
        allocation RLIMIT_AS refused, the soft CPU rlimit's SIGXCPU (ffmpeg catches it and exits), a write
        past the file-size rlimit. Worded as the watchdog words it."""
        limits = self.limits
        if "Cannot allocate memory" in errors:
            return f"the job hit its limit of {limits.memory_mb} MiB of memory"
        if "received signal 24" in errors:
            cpu_seconds = max(1, int(limits.cpu_seconds or context.assignment.timeout_seconds))
            return f"the job hit its limit of {cpu_seconds} CPU seconds"
        if "File too large" in errors or "No space left on device" in errors:
            return f"the job hit its limit of {limits.disk_mb} MiB of disk"
        return None


def _output_format(params: dict[str, Any]) -> str:
    output_format = params.get("format", "mp4")
    if not isinstance(output_format, str) or output_format not in OUTPUT_FORMATS:
        raise JobFailed(
            f"params.format must be one of {', '.join(OUTPUT_FORMATS)} (an ffmpeg muxer), got {output_format!r}"
        )
    return output_format


def _output_name(output_format: str) -> str:
    return f"output.{OUTPUT_FORMATS[output_format]}"


async def _forward_stop(source: StopSignal, target: StopSignal) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        target.request(await source.wait())


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


def _outside_system_folders(tool: str) -> bool:
    """A tool given by its path outside /usr (and /bin, …) is bound in alone; one under them, or a bare name
    found on the sandbox's PATH, is already in the read-only system."""
    path = Path(tool)
    if not path.is_absolute():
        return False
    resolved = path.resolve()
    return not any(resolved.is_relative_to(folder) for folder in SYSTEM_FOLDERS if Path(folder).is_dir())
