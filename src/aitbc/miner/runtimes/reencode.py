"""`reencode`: ffmpeg turns the job's input media file into the format of `params` (`format`, `codec`,
`audio_codec`, `video_bitrate`, `audio_bitrate`, `width`, `height`, `fps`, `sample_rate`). The output goes
to `artifacts/output.<ext>`, a JSON summary (from ffprobe) to `result.txt`; progress comes from ffmpeg's
own `-progress` output. Every parameter is checked against a strict pattern: no option can be injected.

ffprobe and ffmpeg parse a tenant's file, so both run in the job sandbox (`ToolSandbox`): a scratch folder
holding a copy of the input is the only job folder they see (at /job), with no network and hard limits on
memory, CPU time, output size, open files and processes. They read plain media containers only, through the
`file` protocol only (`media_formats`): a playlist or list that names other files fails the job. What ffmpeg
wrote is copied out of the scratch folder without following links, and the scratch folder is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aitbc.domain.job import FailureReason
from aitbc.miner.config import CommandLimits, MinerConfig
from aitbc.miner.process import ProcessOutcome
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeResult, RuntimeUnavailable
from aitbc.miner.runtimes.job_user import copy_regular_file
from aitbc.miner.runtimes.media_formats import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    input_options,
    output_options,
    refused_input,
)
from aitbc.miner.runtimes.tool_sandbox import JOB_FOLDER, ToolLimits, ToolSandbox
from aitbc.miner.sandbox import HostUser, ScratchFolders, check_sandbox
from aitbc.miner.stop import StopReason, StopSignal

NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")
BITRATE = re.compile(r"^\d{1,6}[kKmM]?$")
SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,16}$")
PROBE_TIMEOUT_SECONDS = 30
PROBE_MEMORY_MB = 1024
PROBE_OUTPUT_CHARACTERS = 1_000_000
PROCESS_LIMIT = 512  # threads included: encoders start about one per core
STDERR_TAIL_LINES = 20
PROBE_ENTRIES = "format=format_name,duration:stream=codec_type,codec_name,width,height,sample_rate"


class ReencodeRuntime:
    name = "reencode"

    def __init__(
        self,
        ffmpeg: str,
        ffprobe: str,
        sandbox: ToolSandbox,
        scratch: ScratchFolders,
        limits: CommandLimits | None = None,
        input_formats: Sequence[str] = INPUT_FORMATS,
    ) -> None:
        self._ffmpeg = ffmpeg
        self._ffprobe = ffprobe
        self._sandbox = sandbox
        self._scratch = scratch
        self._limits = limits or CommandLimits()
        self._input_formats = tuple(input_formats)

    @classmethod
    def create(cls, config: MinerConfig, input_formats: Sequence[str] = INPUT_FORMATS) -> ReencodeRuntime:
        ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
        if ffmpeg is None or ffprobe is None:
            raise RuntimeUnavailable("ffmpeg and ffprobe are not on PATH (apt-get install ffmpeg)")
        user = HostUser.for_jobs(config.command_user)
        check_sandbox(user)  # never run ffmpeg on a tenant's file outside a sandbox
        return cls(
            ffmpeg,
            ffprobe,
            ToolSandbox(user, config.kill_grace_seconds),
            ScratchFolders.for_miner(config.work_dir, user),
            config.command_limits,
            input_formats,
        )

    def models(self) -> list[str]:
        return []

    async def close(self) -> None:
        return None

    def _tool_limits(self, cpu_seconds: float, memory_mb: int | None = None) -> ToolLimits:
        return ToolLimits(
            memory_mb=memory_mb or self._limits.memory_mb,
            cpu_seconds=max(1, int(cpu_seconds)),
            file_size_mb=self._limits.disk_mb,
            open_files=self._limits.open_files,
            processes=min(PROCESS_LIMIT, self._limits.max_processes),
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
            outcome = await self._sandbox.run(
                argv,
                scratch,
                self._tool_limits(PROBE_TIMEOUT_SECONDS, min(PROBE_MEMORY_MB, self._limits.memory_mb)),
                stop=stop,
                deadline=min(context.deadline, time.monotonic() + PROBE_TIMEOUT_SECONDS),
                on_stdout=collect,
                on_stderr=stderr.append,
            )
        finally:
            forward.cancel()
        errors = "\n".join(stderr)
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
        width, height = integer("width", 16384), integer("height", 16384)
        if width or height:
            arguments += ["-vf", f"scale={width or -2}:{height or -2}"]
        if fps := integer("fps", 1000):
            arguments += ["-r", str(fps)]
        if sample_rate := integer("sample_rate", 384000):
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
        scratch = self._scratch.create()
        try:
            _place_input(source, scratch / input_name)
            if self._scratch.user is not None:
                self._scratch.user.give(scratch)
            return await self._reencode(context, scratch, input_name, arguments, _output_format(params))
        finally:
            self._scratch.remove(scratch)

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

        limits = self._tool_limits(self._limits.cpu_seconds or context.assignment.timeout_seconds)
        outcome = await self._sandbox.run(
            arguments,
            scratch,
            limits,
            stop=context.stop,
            deadline=context.deadline,
            on_stdout=on_progress,
            on_stderr=on_stderr,
        )
        usage = {"wall_seconds": round(outcome.wall_seconds, 3), "input_seconds": duration}
        target = context.package.artifacts_dir / output_name
        if outcome.stopped is not None:  # canceled or timed out: what ffmpeg wrote so far is the partial result
            copy_regular_file(scratch / output_name, target)
            failure = FailureReason.TIMEOUT if outcome.stopped is StopReason.TIMEOUT else None
            return RuntimeResult(exit_code=outcome.exit_code, failure=failure, usage=usage)
        if outcome.exit_code != 0:
            errors = "\n".join(stderr)
            return RuntimeResult(
                exit_code=outcome.exit_code,
                failure=FailureReason.INVALID_INPUT if refused_input(errors) else FailureReason.RUNTIME_ERROR,
                message=self._failure_message(outcome, errors, limits),
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

    @staticmethod
    def _failure_message(outcome: ProcessOutcome, errors: str, limits: ToolLimits) -> str:
        """Why ffmpeg failed, in words: a limit it hit, a whitelist that refused the input, or its last line."""
        code = outcome.exit_code
        if refused_input(errors):
            return f"ffmpeg refused the input: it is not a plain media file ({_last_line(errors)})"
        if "Cannot allocate memory" in errors:
            return (
                f"ffmpeg ran out of memory: this miner allows {limits.memory_mb} MiB per job "
                "(ask for a smaller size, frame rate or bitrate)"
            )
        if code in (-24, 128 + 24) or "received signal 24" in errors:
            return f"ffmpeg used up its CPU time ({limits.cpu_seconds} s) and was stopped"
        if code in (-25, 128 + 25) or "File too large" in errors:
            return f"ffmpeg's output grew past this miner's limit of {limits.file_size_mb} MiB per file"
        return f"ffmpeg exited with code {code}: {_last_line(errors)} (see logs/stderr.log)"


def _place_input(source: Path, target: Path) -> None:
    """The input the miner downloaded, in the scratch folder: a hard link where both lie on one filesystem (no
    copy of a large file; nothing reads the original after the job), else a copy."""
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        if not copy_regular_file(source, target):
            raise JobFailed("the job's input is not a regular file") from None


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
