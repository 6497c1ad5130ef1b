"""Jobs sealed off from the miner and from each other, through the real agent, the real command runtime and
real bwrap processes: nothing a job starts outlives it, a job that hits a limit fails alone and says which,
no network unless allowed, no secret and no folder of the miner's in sight, no way into the next job."""

from __future__ import annotations

import asyncio
import inspect
import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from aitbc.domain.job import split_stderr_tail
from aitbc.domain.matching import Gpu
from aitbc.miner.cgroups import UNIFIED, MinerCgroups
from aitbc.miner.config import JobLimits
from aitbc.miner.gpus import GpuSlots
from aitbc.miner.runtimes.command import CommandRuntime
from aitbc.miner.sandbox import HostUser, SandboxSpec, ScratchFolders, bwrap_argv, gpu_devices, miner_tag
from aitbc.miner.sandboxed_run import Isolation
from tests.miner.inprocess import InProcess, in_process
from tests.miner.test_command_runtime import command
from tests.support.processes import all_gone, processes_named, unique_marker

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and tmpfs job folders need a root miner")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


async def wait_for(check: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Poll `check` (a function, or one that returns an awaitable) until it gives something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def start_daemon(marker: str) -> str:
    """A script line that leaves a `setsid` daemon behind (its own session, no pipe to the job) and waits
    until it runs."""
    return (
        f"setsid bash -c 'exec -a {marker} sleep 300' </dev/null >/dev/null 2>&1 &\n"
        f"until pgrep -f {marker} >/dev/null; do sleep 0.05; done; echo daemon started\n"
    )


@pytest.mark.parametrize(
    ("ending", "then", "status", "reason"),
    [
        ("completed", "echo done", "completed", None),
        ("failed", "exit 3", "failed", "runtime_error"),
        ("timed out", "sleep 120", "failed", "timeout"),
        ("cancelled", "sleep 120", "canceled", None),
    ],
)
async def test_a_setsid_daemon_is_gone_when_its_job_ends(
    stack: InProcess, ending: str, then: str, status: str, reason: str | None
) -> None:
    marker = unique_marker()
    timeout = {"timeout_seconds": 3} if ending == "timed out" else {}
    job_id = await stack.submit(type="command", input=start_daemon(marker) + then, **timeout)
    agent = stack.agent(command(stack), drain=ending != "cancelled")
    running = asyncio.create_task(agent.run())
    try:
        if ending in ("timed out", "cancelled"):  # the others end at once: their log says the daemon ran
            await wait_for(lambda: processes_named(marker), "the daemon to start")
        if ending == "cancelled":
            answer = await stack.http.post(f"/v1/jobs/{job_id}/cancel", headers=stack.headers)
            assert answer.status_code == 202, answer.text
            await wait_for(lambda: _status_is(stack, job_id, "canceled"), "the cancel to go through")
            agent.request_stop()
        await asyncio.wait_for(running, timeout=60)
    finally:
        running.cancel()
    job = await stack.job(job_id)
    assert (job["status"], job["failure_reason"]) == (status, reason), job
    assert all_gone(marker), f"the daemon outlived its {ending} job"
    if ending != "cancelled":  # a cancel may land before the echo is logged; the daemon was seen running then
        _, files = await stack.package(job_id)
        assert b"daemon started" in files["logs/stdout.log"]


@ROOT_ONLY
async def test_a_fork_bomb_fails_only_its_own_job(stack: InProcess) -> None:
    # Every process waits for its two children: the tree only grows, until forks fail at the limit.
    bomb = await stack.submit(type="command", input="bomb() { bomb | bomb; }; bomb")
    after = await stack.submit(type="command", input="echo still here")
    await stack.drain(command(stack, max_processes=40))
    job = await stack.job(bomb)
    assert (job["status"], job["failure_reason"]) == ("failed", "runtime_error")
    assert split_stderr_tail(job["error"])[0] == "the job hit its limit of 40 processes"
    _, files = await stack.package(bomb)
    assert b"the job hit its limit of 40 processes" in files["logs/stderr.log"]
    assert (await stack.job(after))["status"] == "completed"
    assert (await stack.package(after))[1]["result.txt"] == b"still here\n"


@ROOT_ONLY
async def test_a_disk_filler_fails_only_its_own_job_wherever_it_writes(stack: InProcess) -> None:
    fillers = [
        await stack.submit(type="command", input=f"head -c 100000000 /dev/zero > {place}/fill; sleep 120")
        for place in ("$HOME", "/tmp", "$AITBC_ARTIFACTS_DIR")
    ]
    after = await stack.submit(type="command", input="head -c 1000000 /dev/zero > a; wc -c < a")
    await stack.drain(command(stack, disk_mb=8))
    for job_id in fillers:
        job = await stack.job(job_id)
        assert (job["status"], job["failure_reason"]) == ("failed", "runtime_error"), job
        assert split_stderr_tail(job["error"])[0] == "the job hit its limit of 8 MiB of disk"
    assert (await stack.job(after))["status"] == "completed"
    assert (await stack.package(after))[1]["result.txt"] == b"1000000\n"


@ROOT_ONLY
async def test_a_job_over_its_memory_fails_with_the_limit_named(stack: InProcess) -> None:
    hog = await stack.submit(type="command", input="x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo ${#x}")
    after = await stack.submit(type="command", input="echo fine")
    await stack.drain(command(stack, memory_mb=64))
    job = await stack.job(hog)
    assert (job["status"], job["failure_reason"]) == ("failed", "runtime_error"), job
    assert split_stderr_tail(job["error"])[0] == "the job hit its limit of 64 MiB of memory"
    assert (await stack.job(after))["status"] == "completed"


@ROOT_ONLY
@pytest.mark.slow
async def test_cpu_time_counts_every_process_of_the_job(stack: InProcess) -> None:
    # Two busy processes: neither reaches the per-process rlimit before the two of them reach the job's total.
    burner = await stack.submit(type="command", input="(while :; do :; done) & (while :; do :; done) & wait")
    await stack.drain(command(stack, cpu_seconds=2))
    job = await stack.job(burner)
    assert (job["status"], job["failure_reason"]) == ("failed", "runtime_error"), job
    assert split_stderr_tail(job["error"])[0] == "the job hit its limit of 2 CPU seconds"


async def test_no_network_unless_the_operator_allows_it(stack: InProcess) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello from the host\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    script = f"cat < /dev/tcp/127.0.0.1/{port} || echo unreachable"
    try:
        sealed = await stack.submit(type="command", input=script)
        await stack.drain(command(stack))
        opened = await stack.submit(type="command", input=script)
        await stack.drain(command(stack, "networked", job_network=True), name="networked")
    finally:
        server.close()
    assert (await stack.package(sealed))[1]["result.txt"] == b"unreachable\n"
    assert (await stack.package(opened))[1]["result.txt"] == b"hello from the host\n"


async def test_no_secret_of_the_miner_reaches_a_job(stack: InProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITBC_API_KEY", stack.miner_key)  # as `aitbc miner run` is started
    script = "env; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < $f; done 2>/dev/null"
    job_id = await stack.submit(type="command", input=script)
    await stack.drain(command(stack))
    assert (await stack.job(job_id))["status"] == "completed"
    _, files = await stack.package(job_id)
    seen = files["result.txt"].decode()
    assert "AITBC_JOB_ID=" in seen  # the script did read its own environment
    assert stack.miner_key not in seen and "AITBC_API_KEY" not in seen
    assert "aitbc_" not in seen  # no API key of any kind


async def test_the_miners_folders_and_other_jobs_are_absent_inside_a_job(stack: InProcess) -> None:
    work_dir = stack.root / "miners" / "in-process"
    isolation = command(stack)["command"]._isolation
    other = await stack.submit(type="command", input="until [ -f go ]; do sleep 0.05; done")
    await asyncio.sleep(0)
    places = {
        "data folder": stack.root / "data",
        "database": stack.root / "data" / "aitbc.db",
        "miner work folder": work_dir,
        "state folder": work_dir / "state",
        "key file": work_dir / "state" / "miner_ed25519.pem",
        "jobs folder": work_dir / "jobs",
        "other job's folder": work_dir / "jobs" / other,
        "scratch folders": isolation.scratch.base,
    }
    probe = "\n".join(f'test -e "{path}" && echo "VISIBLE {name}"' for name, path in places.items())
    probe += "\nls /proc | grep -cE '^[0-9]+$' > processes; echo probed"
    prober = await stack.submit(type="command", input=probe)
    agent = stack.agent(command(stack), max_jobs=2)
    running = asyncio.create_task(agent.run())
    try:
        await wait_for(
            lambda: _status_is(stack, prober, "completed"), "the probe to finish while the other job runs", 60
        )
        folders = [path for path in isolation.scratch.base.iterdir() if path.is_dir()]
        assert len(folders) == 1  # the other job's, still running
        # What the miner keeps of a running job is its own alone: the lease id and input are in assignment.json.
        modes = {
            path: stat.S_IMODE(path.stat().st_mode)
            for path in (
                work_dir,
                work_dir / "state",
                work_dir / "jobs",
                work_dir / "jobs" / other,
                work_dir / "jobs" / other / "work",
            )
        }
        assert modes == dict.fromkeys(modes, 0o700)
        for private in ("jobs/" + other + "/assignment.json", "state/miner_ed25519.pem", "state/miner.json"):
            assert stat.S_IMODE((work_dir / private).stat().st_mode) == 0o600, private
        (folders[0] / "work" / "go").touch()
        await asyncio.wait_for(running, timeout=60)
    finally:
        running.cancel()
    assert (await stack.job(other))["status"] == "completed"
    _, files = await stack.package(prober)
    assert files["result.txt"] == b"probed\n", files["result.txt"]


async def _status_is(stack: InProcess, job_id: str, status: str) -> bool:
    return bool((await stack.job(job_id))["status"] == status)


@ROOT_ONLY
async def test_a_daemon_of_one_job_cannot_touch_the_next_jobs_folder(stack: InProcess) -> None:
    """The audit's --run-as injection: a daemon left by one tenant's job wrote into the next tenant's job."""
    marker = unique_marker()
    base = ScratchFolders.default_base(stack.root / "miners" / "in-process", HostUser.for_jobs("nobody"))
    daemon = (
        f"while :; do for d in /job/.. {base}/* /var/lib/aitbc-sandboxes/*/*; do\n"
        "  echo injected > $d/work/injected.txt; echo injected > $d/output/result.txt\n"
        "done 2>/dev/null; sleep 0.05; done\n"
    )
    injector = {
        "script": f"setsid bash -c 'exec -a {marker} bash inject.sh' </dev/null >/dev/null 2>&1 &\n"
        f"until pgrep -f {marker} >/dev/null; do sleep 0.05; done; echo injector started",
        "files": {"inject.sh": daemon},
    }
    first = await stack.submit(type="command", input=injector)
    second = await stack.submit(type="command", input="sleep 1; ls -A; cat injected.txt 2>/dev/null; echo clean")
    await stack.drain(command(stack, command_user="nobody"))
    assert (await stack.job(first))["status"] == "completed"
    assert all_gone(marker)
    job = await stack.job(second)
    assert job["status"] == "completed", job
    _, files = await stack.package(second)
    assert files["result.txt"] == b".aitbc-job.sh\nclean\n"
    assert all(b"injected" not in data for data in files.values())


def test_a_job_sees_only_the_gpus_it_was_given(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidia3", "nvidiactl", "nvidia-uvm"):
        (dev / name).touch()
    devices = gpu_devices([1, 3], dev=dev)
    assert devices == [str(dev / name) for name in ("nvidia1", "nvidia3", "nvidiactl", "nvidia-uvm")]
    argv = bwrap_argv(SandboxSpec(argv=["true"], devices=devices), bwrap="bwrap")
    bound = [argv[i + 1] for i, argument in enumerate(argv) if argument == "--dev-bind"]
    assert bound == devices
    assert str(dev / "nvidia0") not in argv and str(dev / "nvidia2") not in argv


def test_the_agent_gives_each_job_the_least_busy_gpus() -> None:
    slots = GpuSlots(4)
    first = slots.acquire(2)
    second = slots.acquire(1)
    assert first == (0, 1) and second == (2,)
    assert slots.free == [3]
    slots.release(first)
    assert slots.acquire(3) == (0, 1, 3)
    assert slots.acquire(1) == (0,)  # every GPU is busy: the job shares the least busy one


async def test_cuda_visible_devices_names_the_jobs_gpus(stack: InProcess) -> None:
    job_id = await stack.submit(
        type="command", input="echo $CUDA_VISIBLE_DEVICES; echo $CUDA_DEVICE_ORDER", requirements={"gpu_count": 2}
    )
    await stack.drain(command(stack), gpus=(Gpu("t4", 16), Gpu("t4", 16), Gpu("t4", 16)))
    assert (await stack.package(job_id))[1]["result.txt"] == b"0,1\nPCI_BUS_ID\n"


def test_each_miner_has_its_own_tag(tmp_path: Path) -> None:
    assert miner_tag(tmp_path / "a") != miner_tag(tmp_path / "b")
    assert miner_tag(tmp_path / "a") == miner_tag(tmp_path / "a" / ".." / "a")


class UncappedScratch(ScratchFolders):
    """Job folders as a miner that may not mount gets them: plain folders, watched for their size."""

    @property
    def can_cap_disk(self) -> bool:
        return False


async def test_without_cgroups_or_a_tmpfs_rlimits_and_the_watchdog_hold(stack: InProcess) -> None:
    made = command(stack)["command"]._isolation
    limits = JobLimits(max_processes=4096, memory_mb=256, disk_mb=8, open_files=100)
    isolation = Isolation(UncappedScratch(made.scratch.base, made.scratch.user), made.user, None, limits)
    runtimes = {"command": CommandRuntime(isolation, kill_grace_seconds=0.5)}
    shown = await stack.submit(type="command", input="ulimit -v; ulimit -u; ulimit -n; ulimit -f")
    # Files each under the file-size rlimit, together over the disk limit: only the watchdog sees that.
    filler = await stack.submit(
        type="command", input="for i in $(seq 1 12); do head -c 1000000 /dev/zero > f$i; done; sleep 120"
    )
    after = await stack.submit(type="command", input="echo fine")
    await stack.drain(runtimes)
    assert (await stack.package(shown))[1]["result.txt"] == b"262144\n4096\n100\n8192\n"
    job = await stack.job(filler)
    assert (job["status"], split_stderr_tail(job["error"])[0]) == (
        "failed",
        "the job hit its limit of 8 MiB of disk",
    ), job
    assert (await stack.job(after))["status"] == "completed"


@pytest.mark.parametrize(("replaced", "target"), [("/job/output", ""), ("$AITBC_ARTIFACTS_DIR", "artifacts")])
async def test_a_link_left_in_place_of_the_output_folders_is_not_followed(
    stack: InProcess, tmp_path: Path, replaced: str, target: str
) -> None:
    host = tmp_path / "host-folder"  # shaped like the job's output folder, with secrets in it
    (host / "artifacts").mkdir(parents=True)
    (host / "result.txt").write_text("PRIVATE KEY\n")
    (host / "artifacts" / "key.pem").write_text("PRIVATE KEY\n")
    script = f'rm -rf "{replaced}"; ln -s {host / target} "{replaced}"; echo out'
    job_id = await stack.submit(type="command", input=script)
    await stack.drain(command(stack))
    assert (await stack.job(job_id))["status"] == "completed"
    _, files = await stack.package(job_id)
    assert files["result.txt"] == b"out\n"
    assert not any(path.startswith("artifacts/") for path in files)
    assert all(b"PRIVATE KEY" not in data for data in files.values())


def v2_only(isolation: Isolation, limits: JobLimits) -> dict[str, CommandRuntime]:
    """The command runtime as on a cgroup v2-only host: the same miner, with its v1 folders left out."""
    assert isolation.cgroups is not None and UNIFIED in isolation.cgroups.folders, isolation.cgroups
    cgroups = MinerCgroups({UNIFIED: isolation.cgroups.folders[UNIFIED]})
    return {"command": CommandRuntime(replace(isolation, cgroups=cgroups, limits=limits), kill_grace_seconds=0.5)}


@ROOT_ONLY
@pytest.mark.skipif(" cgroup2 " not in Path("/proc/self/mounts").read_text(), reason="no cgroup v2 hierarchy")
async def test_on_cgroup_v2_alone_a_job_is_held_whole(stack: InProcess) -> None:
    isolation = command(stack)["command"]._isolation
    runtimes = v2_only(isolation, JobLimits(cpu_seconds=2, max_processes=300, memory_mb=512))
    marker = unique_marker()
    # Two busy processes: only the cgroup's count of all of them (cpu.stat) reaches 2 s before the rlimits do.
    burner = await stack.submit(
        type="command", input=f"{start_daemon(marker)}(while :; do :; done) & (while :; do :; done) & wait"
    )
    shown = await stack.submit(type="command", input="ulimit -v; ulimit -u")
    await stack.drain(runtimes)
    job = await stack.job(burner)
    assert (job["status"], split_stderr_tail(job["error"])[0]) == (
        "failed",
        "the job hit its limit of 2 CPU seconds",
    ), job
    assert all_gone(marker)
    job_cgroup = runtimes["command"]._isolation.cgroups.create("probe", JobLimits())  # type: ignore[union-attr]
    try:  # where the host's v2 hierarchy has no memory or pids controller (as here), rlimits cap those
        expected = ["unlimited" if job_cgroup.caps("memory") else str(512 * 1024)]
        expected.append("unlimited" if job_cgroup.caps("pids") else "300")
    finally:
        job_cgroup.remove()
    assert (await stack.package(shown))[1]["result.txt"].decode().split() == expected
    miner_folder = runtimes["command"]._isolation.cgroups.folders[UNIFIED]  # type: ignore[union-attr]
    assert not [child for child in miner_folder.iterdir() if child.is_dir()]  # no job cgroup left behind
