"""`reencode`: ffmpeg turns the job's input media file into the format of `params` (`format`, `codec`,
`audio_codec`, `video_bitrate`, `audio_bitrate`, `width`, `height`, `fps`, `sample_rate`). The output goes
to `artifacts/output.<ext>`, a JSON summary (from ffprobe) to `result.txt`; progress comes from ffmpeg's
own `-progress` output. Every parameter is checked against a strict pattern: no option can be injected."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

from aitbc.domain.job import FailureReason
from aitbc.miner.config import MinerConfig
from aitbc.miner.process import run_process
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeResult, RuntimeUnavailable
from aitbc.miner.stop import StopReason

NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")
BITRATE = re.compile(r"^\d{1,6}[kKmM]?$")
EXTENSIONS = {"matroska": "mkv", "mpegts": "ts", "ipod": "m4a", "adts": "aac", "image2": "png"}
PROBE_TIMEOUT_SECONDS = 30


class ReencodeRuntime:
    name = "reencode"

    def __init__(self, ffmpeg: str, ffprobe: str, kill_grace_seconds: float) -> None:
        self._ffmpeg = ffmpeg
        self._ffprobe = ffprobe
        self._kill_grace = kill_grace_seconds

    @classmethod
    def create(cls, config: MinerConfig) -> ReencodeRuntime:
        ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
        if ffmpeg is None or ffprobe is None:
            raise RuntimeUnavailable("ffmpeg and ffprobe are not on PATH (apt-get install ffmpeg)")
        return cls(ffmpeg, ffprobe, config.kill_grace_seconds)

    def models(self) -> list[str]:
        return []

    async def close(self) -> None:
        return None

    async def probe(self, path: Path) -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            self._ffprobe,
            "-v",
            "error",
            "-show_entries",
            "format=format_name,duration:stream=codec_type,codec_name,width,height,sample_rate",
            "-of",
            "json",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=PROBE_TIMEOUT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise JobFailed(f"ffprobe took over {PROBE_TIMEOUT_SECONDS} s on {path.name}") from None
        if process.returncode != 0:
            raise JobFailed(f"{path.name} is not a media file ffprobe can read: {err.decode(errors='replace')[:300]}")
        found: dict[str, Any] = json.loads(out or b"{}")
        return found

    def _arguments(self, params: dict[str, Any], source: Path, target: Path, output_format: str) -> list[str]:
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

        arguments = [self._ffmpeg, "-hide_banner", "-nostdin", "-y", "-i", str(source)]
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
        return [*arguments, "-f", output_format, "-progress", "pipe:1", "-nostats", str(target)]

    async def run(self, context: JobContext) -> RuntimeResult:
        source = context.input_path
        if source is None:
            raise JobFailed("a reencode job needs a media file as its input (aitbc client submit --input FILE)")
        params = context.assignment.params
        output_format = params.get("format", "mp4")
        if not isinstance(output_format, str) or not NAME.match(output_format):
            raise JobFailed(f"params.format must be an ffmpeg format name like 'webm', got {output_format!r}")
        target = context.package.artifacts_dir / f"output.{EXTENSIONS.get(output_format, output_format)}"
        arguments = self._arguments(params, source, target, output_format)
        duration = float((await self.probe(source)).get("format", {}).get("duration") or 0)

        def on_progress(line: str) -> None:
            key, _, value = line.partition("=")
            if key in ("out_time_us", "out_time_ms") and duration > 0 and value.strip().isdigit():
                context.reporter.progress(min(99.0, int(value) / 1e6 / duration * 100))
            elif key == "progress" and value == "end":
                context.reporter.progress(100)

        outcome = await run_process(
            arguments,
            cwd=context.work_dir,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
            stop=context.stop,
            deadline=context.deadline,
            on_stdout=on_progress,
            on_stderr=lambda line: context.reporter.line("stderr", line),
            kill_grace_seconds=self._kill_grace,
        )
        usage = {"wall_seconds": round(outcome.wall_seconds, 3), "input_seconds": duration}
        if outcome.stopped is not None:
            failure = FailureReason.TIMEOUT if outcome.stopped is StopReason.TIMEOUT else None
            return RuntimeResult(exit_code=outcome.exit_code, failure=failure, usage=usage)
        if outcome.exit_code != 0:
            return RuntimeResult(
                exit_code=outcome.exit_code,
                failure=FailureReason.RUNTIME_ERROR,
                message=f"ffmpeg exited with code {outcome.exit_code}: see logs/stderr.log",
                usage=usage,
            )
        probed = await self.probe(target)
        summary = {
            "file": f"artifacts/{target.name}",
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
