"""The audit's attack on `reencode`, reproduced with real ffmpeg: an uploaded playlist or list that names a
file outside the job (an HLS playlist with `file:///…` segments, the same playlist named `.mp4`, a concat
list) must fail the job with a clear message and hand back nothing of that file. Each layer is checked on
its own: the format whitelist (ffprobe and ffmpeg both), the mount namespace (with HLS let through, the
miner's state folder is still not there), and the limits (memory, output size, CPU), plus cancel taking ffmpeg
down at once. ffprobe and ffmpeg run through `sandboxed_run`, as command jobs do: the same cgroups, limits,
watchdog and failure messages."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aitbc.miner.config import JobLimits, MinerConfig
from aitbc.miner.runtimes.command import CommandRuntime
from aitbc.miner.runtimes.interface import JobFailed
from aitbc.miner.runtimes.media_formats import INPUT_FORMATS
from aitbc.miner.runtimes.reencode import ReencodeRuntime
from aitbc.miner.runtimes.registry import build_runtimes
from aitbc.miner.sandbox import HostUser
from aitbc.miner.sandboxed_run import CPU_GRACE_SECONDS, Isolation, SandboxOutcome, clear_leftovers, sandbox_command
from aitbc.miner.stop import StopReason, StopSignal
from tests.miner.inprocess import InProcess, in_process
from tests.support.processes import process_gone

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
SECRET_SERVICE = "AITBC-SECRET-SERVICE"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user could read (0755 all the way up): file permissions alone would not stop a job's
    user from reading what is in it, so only the sandbox's mount namespace can."""
    folder = Path(tempfile.mkdtemp(prefix="aitbc-reencode-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *arguments], check=True, timeout=120)


def make_clip(path: Path, seconds: int = 2) -> Path:
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(path),
    )  # fmt: skip
    return path


def make_secret(folder: Path) -> Path:
    """A private recording the miner keeps (an MPEG-TS file: the kind of segment HLS accepts), world-readable."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    path = folder / "private-recording.ts"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=1000:duration=3", "-c:a", "mp2",
        "-metadata", f"service_name={SECRET_SERVICE}", "-f", "mpegts", str(path),
    )  # fmt: skip
    path.chmod(0o644)
    return path


def playlist(segment: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n{segment}\n#EXT-X-ENDLIST\n"


def miner_config(work_dir: Path, **options: object) -> MinerConfig:
    return MinerConfig(url="http://unused", api_key="unused", name="t", work_dir=work_dir, **options)  # type: ignore[arg-type]


async def run_tool(
    runtime: ReencodeRuntime, argv: list[str], folder: Path, cpu_seconds: int = 60, lines: list[str] | None = None
) -> SandboxOutcome:
    """Run argv the way the runtime runs ffprobe and ffmpeg, in `folder` (one of its isolation's folders)."""
    seen = lines if lines is not None else []
    return await runtime.run_tool(
        argv,
        folder,
        cpu_seconds=cpu_seconds,
        stop=StopSignal(),
        deadline=time.monotonic() + 60,
        on_stdout=seen.append,
        on_stderr=seen.append,
    )


def host_ffmpeg_leaks(attack: Path, tmp_path: Path) -> bool:
    """The control: plain ffmpeg, as `reencode` ran it before, turns the attack file into the secret's audio."""
    leaked = tmp_path / "leaked.wav"
    answer = subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(attack), "-f", "wav", str(leaked)], capture_output=True, timeout=60
    )
    return answer.returncode == 0 and leaked.stat().st_size > 100_000  # 3 s of 44.1 kHz 16-bit audio


async def run_job(stack: InProcess, runtime: ReencodeRuntime, attack: Path, work_dir: Path) -> dict[str, object]:
    file_id = await stack.upload(attack)
    job_id = await stack.submit(type="reencode", input_file_id=file_id, params={"format": "wav"})
    await stack.drain({"reencode": runtime}, work_dir=work_dir)
    job = await stack.job(job_id)
    _, files = await stack.package(job_id)
    job["files"] = files
    return job


def assert_nothing_leaked(job: dict[str, object]) -> None:
    files = job["files"]
    assert isinstance(files, dict)
    assert [path for path in files if path.startswith("artifacts/")] == []
    for content in files.values():
        assert SECRET_SERVICE.encode() not in content
        assert b"root:x:0:0" not in content


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("attack.m3u8", "file://{secret}"),
        ("attack.m3u8", "{secret}"),
        ("attack.mp4", "file://{secret}"),  # HLS named as an MP4: ffmpeg probes the content, not the name
    ],
)
async def test_an_hls_playlist_naming_a_file_outside_the_job_fails_the_job(
    stack: InProcess, tmp_path: Path, open_folder: Path, name: str, segment: str
) -> None:
    work_dir = open_folder / "miner"
    secret = make_secret(work_dir / "state")
    attack = tmp_path / name
    attack.write_text(playlist(segment.format(secret=secret)))
    assert host_ffmpeg_leaks(attack, tmp_path), "the attack file does not work on plain ffmpeg here"

    job = await run_job(stack, ReencodeRuntime.create(miner_config(work_dir)), attack, work_dir)

    assert job["status"] == "failed"
    assert job["failure_reason"] == "invalid_input"
    assert "not a plain media file" in str(job["error"]), job["error"]
    assert "HLS" in str(job["error"])
    assert_nothing_leaked(job)


async def test_a_playlist_naming_etc_passwd_fails_the_job(stack: InProcess, tmp_path: Path) -> None:
    attack = tmp_path / "passwd.m3u8"
    attack.write_text(playlist("file:///etc/passwd"))
    job = await run_job(stack, ReencodeRuntime.create(miner_config(tmp_path / "miner")), attack, tmp_path / "miner")
    assert job["status"] == "failed"
    assert job["failure_reason"] == "invalid_input"
    assert "not a plain media file" in str(job["error"]), job["error"]
    assert_nothing_leaked(job)


async def test_a_concat_list_naming_a_file_outside_the_job_fails_the_job(
    stack: InProcess, tmp_path: Path, open_folder: Path
) -> None:
    work_dir = open_folder / "miner"
    secret = make_secret(work_dir / "state")
    attack = tmp_path / "list.txt"
    attack.write_text(f"ffconcat version 1.0\nfile '{secret}'\nfile 'file://{secret}'\n")
    job = await run_job(stack, ReencodeRuntime.create(miner_config(work_dir)), attack, work_dir)
    assert job["status"] == "failed"
    assert job["failure_reason"] == "invalid_input"
    assert "not a plain media file" in str(job["error"]), job["error"]
    assert_nothing_leaked(job)


async def test_ffmpeg_itself_refuses_a_playlist_not_only_the_probe(tmp_path: Path, open_folder: Path) -> None:
    """The whitelists are on ffmpeg's own command line too: run it on the playlist without the probe first."""
    secret = make_secret(open_folder / "state")
    runtime = ReencodeRuntime.create(miner_config(tmp_path))
    folder = runtime.isolation.scratch.create()
    (folder / "input.mp4").write_text(playlist(f"file://{secret}"))
    if runtime.isolation.user is not None:
        runtime.isolation.user.give(folder)
    errors: list[str] = []
    outcome = await run_tool(runtime, runtime.command_line({"format": "wav"}, "input.mp4"), folder, lines=errors)
    assert outcome.process.exit_code != 0
    assert outcome.limit is None
    assert any("not on whitelist" in line for line in errors), errors
    assert not (folder / "output.wav").exists() or (folder / "output.wav").stat().st_size == 0


async def test_the_mount_namespace_hides_the_miners_state_folder_even_from_an_allowed_playlist(
    stack: InProcess, tmp_path: Path, open_folder: Path
) -> None:
    """With HLS let through the format whitelist on purpose, the segment still cannot be read: the miner's
    state folder is not in ffmpeg's world, although its permissions would let the job's user read it."""
    work_dir = open_folder / "miner"
    secret = make_secret(work_dir / "state")
    attack = tmp_path / "attack.m3u8"
    attack.write_text(playlist(f"file://{secret}"))
    runtime = ReencodeRuntime.create(miner_config(work_dir), input_formats=(*INPUT_FORMATS, "hls"))

    user = HostUser.for_jobs()
    if user is not None:  # the control: outside the sandbox, the job's host user may read the secret
        as_job_user = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
        assert subprocess.run([*as_job_user, "head", "-c", "1", str(secret)], capture_output=True).returncode == 0

    job = await run_job(stack, runtime, attack, work_dir)

    assert job["status"] == "failed"
    assert "Error when loading first segment" in str(job["error"]), job["error"]
    assert_nothing_leaked(job)
    seen: list[str] = []
    outcome = await run_tool(
        runtime,
        ["bash", "-c", f'test -e "{secret}" && echo VISIBLE; test -e "{work_dir}" && echo VISIBLE; ls -A /job'],
        runtime.isolation.scratch.create(),
        cpu_seconds=10,
        lines=seen,
    )
    assert outcome.process.exit_code == 0, seen
    assert seen == [], f"the sandbox sees more than its empty job folder: {seen}"


async def test_a_normal_reencode_leaves_no_scratch_folder_and_runs_as_the_jobs_user(
    stack: InProcess, tmp_path: Path, open_folder: Path
) -> None:
    isolation = Isolation.for_miner(miner_config(open_folder / "miner", sandbox_dir=open_folder / "scratch"))
    user, scratch = isolation.user, isolation.scratch
    ffmpeg_path, ffprobe_path = shutil.which("ffmpeg"), shutil.which("ffprobe")
    assert ffmpeg_path and ffprobe_path
    runtime = ReencodeRuntime(ffmpeg_path, ffprobe_path, isolation)
    clip = make_clip(tmp_path / "clip.mp4")
    file_id = await stack.upload(clip)
    job_id = await stack.submit(type="reencode", input_file_id=file_id, params={"format": "matroska", "codec": "mpeg4"})
    await stack.drain({"reencode": runtime})
    job = await stack.job(job_id)
    assert job["status"] == "completed", job
    _, files = await stack.package(job_id)
    assert files["artifacts/output.mkv"][:4] == b"\x1a\x45\xdf\xa3"  # the Matroska (EBML) magic
    assert not scratch.base.exists() or scratch.leftovers() == []  # closing the runtime removes the empty base
    argv = sandbox_command(runtime.tool_spec(["ffmpeg"], tmp_path), user, None)  # what run_in_sandbox runs
    assert "--unshare-net" in argv and "--unshare-pid" in argv
    assert "MALLOC_ARENA_MAX" in argv
    if user is not None:
        assert argv[0] == "setpriv" and f"--reuid={user.uid}" in argv


@pytest.mark.parametrize("output_format", ["hls", "segment", "tee", "dash", "rtp", "-i /etc/passwd", "image2pipe"])
def test_output_formats_outside_the_whitelist_are_refused(tmp_path: Path, output_format: str) -> None:
    runtime = ReencodeRuntime.create(miner_config(tmp_path))
    with pytest.raises(JobFailed, match=r"params\.format must be one of"):
        runtime.command_line({"format": output_format}, "input.mp4")


def test_ffmpegs_command_line_carries_both_whitelists(tmp_path: Path) -> None:
    argv = ReencodeRuntime.create(miner_config(tmp_path)).command_line({"format": "webm"}, "input.mp4")
    before_input, after_input = argv[: argv.index("-i")], argv[argv.index("-i") :]
    assert before_input[before_input.index("-protocol_whitelist") + 1] == "file"
    allowed = before_input[before_input.index("-format_whitelist") + 1].split(",")
    assert not {"hls", "concat", "image2", "dash", "data", "subfile", "tee"} & set(allowed)
    assert after_input[after_input.index("-protocol_whitelist") + 1] == "file"
    assert after_input[after_input.index("-f") + 1] == "webm"
    assert argv[-1] == "/job/output.webm"


async def test_an_absurd_size_hits_the_memory_limit_and_fails_cleanly(stack: InProcess, tmp_path: Path) -> None:
    runtime = ReencodeRuntime.create(miner_config(tmp_path, job_limits=JobLimits(memory_mb=512)))
    clip = make_clip(tmp_path / "clip.mp4")
    file_id = await stack.upload(clip)
    job_id = await stack.submit(
        type="reencode", input_file_id=file_id, params={"format": "mp4", "width": 8192, "height": 8192}
    )
    await stack.drain({"reencode": runtime})
    job = await stack.job(job_id)
    assert job["status"] == "failed", job
    assert job["failure_reason"] == "runtime_error", job["error"]
    assert "the job hit its limit of 512 MiB of memory" in job["error"], job["error"]  # as a command job's
    assert "ffmpeg was stopped" in job["error"], job["error"]


async def test_an_output_past_the_file_size_limit_fails_the_job(stack: InProcess, tmp_path: Path) -> None:
    runtime = ReencodeRuntime.create(miner_config(tmp_path, job_limits=JobLimits(disk_mb=1)))
    clip = tmp_path / "tone.mp2"  # 30 s of mono sound at 32 kbit/s (120 kB); as 44.1 kHz WAV about 2.5 MiB
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=30", "-c:a", "mp2", "-b:a", "32k", "-ac", "1", str(clip))
    assert clip.stat().st_size < 200_000
    file_id = await stack.upload(clip)
    job_id = await stack.submit(type="reencode", input_file_id=file_id, params={"format": "wav"})
    await stack.drain({"reencode": runtime})
    job = await stack.job(job_id)
    assert job["status"] == "failed"
    assert "the job hit its limit of 1 MiB of disk" in job["error"], job["error"]


async def test_every_limit_is_set_hard_inside_the_tools_sandbox(tmp_path: Path) -> None:
    """Where there are no cgroups (a miner not root) the rlimits carry every limit: the same ones as a command
    job's, the CPU one soft first (SIGXCPU, which ffmpeg reports) and hard a little later."""
    limits = JobLimits(memory_mb=700, disk_mb=3, open_files=77, max_processes=99)
    made = ReencodeRuntime.create(miner_config(tmp_path)).isolation
    runtime = ReencodeRuntime.create(miner_config(tmp_path), Isolation(made.scratch, made.user, None, limits))
    lines: list[str] = []
    script = "cat /proc/self/limits; echo arenas=$MALLOC_ARENA_MAX"
    outcome = await run_tool(runtime, ["bash", "-c", script], made.scratch.create(), cpu_seconds=42, lines=lines)
    assert outcome.process.exit_code == 0, lines
    table = {line[:26].strip(): line[26:].split()[:2] for line in lines[1:-1]}
    assert table["Max cpu time"] == ["42", str(42 + CPU_GRACE_SECONDS)]  # SIGXCPU first, SIGKILL a little later
    assert table["Max address space"] == [str(700 * 1024 * 1024)] * 2
    assert table["Max file size"] == [str(3 * 1024 * 1024)] * 2
    assert table["Max open files"] == ["77", "77"]
    assert table["Max processes"] == ["99", "99"]
    assert lines[-1] == "arenas=2"


@pytest.mark.skipif(os.geteuid() != 0, reason="job cgroups need a root miner")
async def test_ffmpeg_runs_in_the_jobs_cgroups_as_root(tmp_path: Path) -> None:
    """As root the memory and process caps are the job's own cgroups (not rlimits), as for a command job."""
    runtime = ReencodeRuntime.create(miner_config(tmp_path, job_limits=JobLimits(memory_mb=300, max_processes=50)))
    cgroups = runtime.isolation.cgroups
    assert cgroups is not None and "memory" in cgroups.folders and "pids" in cgroups.folders
    folder = runtime.isolation.scratch.create()
    memory, pids = cgroups.folders["memory"] / folder.name, cgroups.folders["pids"] / folder.name
    stop, seen, lines = StopSignal(), asyncio.Event(), []
    inside: dict[str, str] = {}

    def on_line(line: str) -> None:
        lines.append(line)
        if line == "started":  # read the job's cgroups from the host while the tool runs
            inside["procs"] = (memory / "cgroup.procs").read_text()
            inside["memory"] = (memory / "memory.limit_in_bytes").read_text().strip()
            inside["pids"] = (pids / "pids.max").read_text().strip()
            seen.set()

    running = asyncio.create_task(
        runtime.run_tool(
            ["bash", "-c", "ulimit -v; ulimit -u; echo started; sleep 60"],
            folder,
            cpu_seconds=60,
            stop=stop,
            deadline=time.monotonic() + 60,
            on_stdout=on_line,
            on_stderr=lines.append,
        )
    )
    await asyncio.wait_for(seen.wait(), timeout=30)
    stop.request(StopReason.CANCELED)
    outcome = await running
    assert outcome.process.stopped is StopReason.CANCELED
    assert lines[0] == "unlimited" and lines[1] != "50", lines  # no rlimit: the cgroups hold memory and processes
    assert inside["procs"].split(), "the tool was not in the job's memory cgroup"
    assert inside["memory"] == str(300 * 1024 * 1024)
    assert inside["pids"] == "50"
    assert not memory.exists() and not pids.exists()  # removed with the run


async def test_cpu_time_past_the_limit_fails_the_job_with_its_reason(stack: InProcess, tmp_path: Path) -> None:
    runtime = ReencodeRuntime.create(miner_config(tmp_path, job_limits=JobLimits(cpu_seconds=1)))
    clip = make_clip(tmp_path / "clip.mp4", seconds=60)
    file_id = await stack.upload(clip)
    job_id = await stack.submit(
        type="reencode",
        input_file_id=file_id,
        params={"format": "mp4", "codec": "libx264", "width": 1920, "height": 1080, "fps": 60},
    )
    await stack.drain({"reencode": runtime})
    job = await stack.job(job_id)
    assert job["status"] == "failed"
    assert "the job hit its limit of 1 CPU seconds" in job["error"], job["error"]  # as a command job's


def descendants(pid: int) -> dict[int, str]:
    """Every process under `pid` (host PIDs), with its command name."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        names[int(entry.name)] = name
        children.setdefault(int(rest[1]), []).append(int(entry.name))
    found: dict[int, str] = {}
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found[child] = names[child]
            pending.append(child)
    return found


async def test_cancel_stops_ffmpeg_and_everything_in_its_sandbox_at_once(stack: InProcess, tmp_path: Path) -> None:
    runtime = ReencodeRuntime.create(miner_config(tmp_path))
    clip = make_clip(tmp_path / "long.mp4", seconds=120)
    file_id = await stack.upload(clip)
    job_id = await stack.submit(
        type="reencode",
        input_file_id=file_id,
        params={"format": "mp4", "codec": "libx264", "width": 1920, "height": 1080, "fps": 60},
    )
    miner = asyncio.create_task(stack.drain({"reencode": runtime}))
    deadline = time.monotonic() + 60
    while "ffmpeg" not in (sandboxed := descendants(os.getpid())).values():  # read from /proc: no HTTP polling
        assert time.monotonic() < deadline and not miner.done(), "ffmpeg never started"
        await asyncio.sleep(0.05)
    assert "bwrap" in sandboxed.values(), sandboxed

    answer = await stack.http.post(f"/v1/jobs/{job_id}/cancel", headers=stack.headers)
    assert answer.json()["outcome"] == "canceling"
    await asyncio.wait_for(miner, timeout=30)

    assert (await stack.job(job_id))["status"] == "canceled"
    survivors = {pid: name for pid, name in sandboxed.items() if not process_gone(pid)}
    assert survivors == {}, f"processes outlived the canceled job: {survivors}"


PLAIN_MEDIA = {
    "clip.mp4": ["-f", "lavfi", "-i", "testsrc=size=32x24:duration=1", "-c:v", "mpeg4"],
    "clip.mkv": ["-f", "lavfi", "-i", "testsrc=size=32x24:duration=1", "-c:v", "mpeg4"],
    "clip.webm": ["-f", "lavfi", "-i", "testsrc=size=32x24:duration=1", "-c:v", "libvpx"],
    "clip.avi": ["-f", "lavfi", "-i", "testsrc=size=32x24:duration=1"],
    "clip.ts": ["-f", "lavfi", "-i", "testsrc=size=32x24:duration=1"],
    "sound.wav": ["-f", "lavfi", "-i", "sine=duration=1"],
    "sound.mp3": ["-f", "lavfi", "-i", "sine=duration=1"],
    "sound.flac": ["-f", "lavfi", "-i", "sine=duration=1"],
    "sound.ogg": ["-f", "lavfi", "-i", "sine=duration=1", "-c:a", "libopus"],
    "sound.aac": ["-f", "lavfi", "-i", "sine=duration=1"],
    "still.png": ["-f", "lavfi", "-i", "testsrc=size=32x24", "-frames:v", "1"],
    "still.jpg": ["-f", "lavfi", "-i", "testsrc=size=32x24", "-frames:v", "1"],
}


async def test_plain_media_of_every_common_kind_passes_the_whitelist(tmp_path: Path, open_folder: Path) -> None:
    """A whitelist with a wrong name would refuse good media: probe one file of each kind in the sandbox."""
    runtime = ReencodeRuntime.create(miner_config(tmp_path))
    folder = runtime.isolation.scratch.create()
    for name, arguments in PLAIN_MEDIA.items():
        ffmpeg(*arguments, str(folder / name))
    if runtime.isolation.user is not None:
        runtime.isolation.user.give(folder)
    refused = {}
    for name in PLAIN_MEDIA:
        lines: list[str] = []
        argv = [
            "ffprobe",
            "-v",
            "error",
            *runtime.input_options(),
            "-show_entries",
            "format=format_name",
            f"/job/{name}",
        ]
        outcome = await run_tool(runtime, argv, folder, cpu_seconds=30, lines=lines)
        if outcome.process.exit_code != 0 or not any(line.startswith("format_name=") for line in lines):
            refused[name] = lines
    assert refused == {}


async def test_a_still_image_output_is_the_first_frame_in_one_file(stack: InProcess, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    file_id = await stack.upload(clip)
    job_id = await stack.submit(type="reencode", input_file_id=file_id, params={"format": "image2"})
    await stack.drain({"reencode": ReencodeRuntime.create(miner_config(tmp_path / "miner"))})
    job = await stack.job(job_id)
    assert job["status"] == "completed", job
    _, files = await stack.package(job_id)
    assert files["artifacts/output.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert [path for path in files if path.startswith("artifacts/")] == ["artifacts/output.png"]


def test_a_reencode_jobs_leftover_folder_is_cleared_at_start(tmp_path: Path) -> None:
    """A miner killed during a reencode job leaves its folder (a mounted tmpfs as root) and maybe its cgroup:
    the next start clears them, as it does a command job's."""
    config = miner_config(tmp_path / "miner")
    runtime = ReencodeRuntime.create(config)
    isolation = runtime.isolation
    folder = isolation.scratch.create(runtime.limits.disk_mb)  # what `run` makes for a job
    (folder / "input.mp4").write_bytes(b"x" * 1000)
    cgroup = isolation.cgroups.create(folder.name, runtime.limits) if isolation.cgroups else None
    assert folder in isolation.scratch.leftovers()

    assert clear_leftovers(config) >= 1

    assert not folder.exists()
    assert not os.path.ismount(folder)
    if cgroup is not None:
        assert not any(path.exists() for path in cgroup.folders.values())


async def test_command_and_reencode_share_the_miners_one_isolation(tmp_path: Path) -> None:
    """One miner, one set of scratch folders, cgroups and limits: its start-up clean-up covers both runtimes."""
    config = miner_config(tmp_path / "miner", allow_command=True, runtimes=("command", "reencode"))
    built, missing = build_runtimes(config)
    try:
        assert missing == {}
        command, reencode = built["command"], built["reencode"]
        assert isinstance(command, CommandRuntime) and isinstance(reencode, ReencodeRuntime)
        assert command._isolation is reencode.isolation
    finally:
        for runtime in built.values():
            await runtime.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="a tmpfs job folder needs a root miner")
async def test_an_input_larger_than_the_jobs_disk_fails_with_that_limit(stack: InProcess, tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    file_id = await stack.upload(big)
    job_id = await stack.submit(type="reencode", input_file_id=file_id, params={"format": "wav"})
    await stack.drain({"reencode": ReencodeRuntime.create(miner_config(tmp_path, job_limits=JobLimits(disk_mb=1)))})
    job = await stack.job(job_id)
    assert job["status"] == "failed"
    assert "does not fit in its limit of 1 MiB of disk" in str(job["error"]), job["error"]
