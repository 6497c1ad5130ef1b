"""The AI worker with real processes: a sandboxed Python that runs the packaged all-MiniLM-L6-v2 for the
embedding runtime, seen from the host through /proc/<its pid>/ (its root, environment, network, user)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aitbc.domain.job import Job, JobStatus
from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.embedding import EmbeddingRuntime
from aitbc.miner.runtimes.interface import JobContext, JobFailed, RuntimeResult
from aitbc.miner.sandbox import SYSTEM_FOLDERS, HostUser, bwrap_argv
from aitbc.miner.worker.exchange import ExchangeFolders
from aitbc.miner.worker.messages import EXCHANGE
from aitbc.miner.worker.pool import Worker
from aitbc.miner.worker.sandboxing import (
    OFFLINE_ENVIRONMENT,
    THREAD_SETTINGS,
    python_folders,
    worker_argv,
    worker_spec,
)
from tests.miner.ai_extra import needs_ai
from tests.miner.inprocess import InProcess, in_process

REPOSITORY = Path(__file__).resolve().parents[2]
MINER = "in-process"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


@pytest.fixture
async def runtime(stack: InProcess) -> AsyncIterator[EmbeddingRuntime]:
    """The embedding runtime of the miner `stack.drain` runs (same work folder, so the same state folder)."""
    config = MinerConfig(url="http://unused", api_key="unused", name=MINER, work_dir=stack.root / "miners" / MINER)
    made = EmbeddingRuntime.create(config)
    yield made
    await made.close()


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def worker_python(worker: Worker) -> int:
    """The worker's Python process, under bwrap (and bwrap's PID 1 in the sandbox)."""
    pending = [worker.pid]
    while pending:
        pid = pending.pop()
        if (
            b"aitbc.miner.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and b"bwrap" not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        ):
            return pid
        pending += children(pid)
    raise AssertionError(f"no worker Python under {worker.pid}")


def only_worker(runtime: EmbeddingRuntime) -> Worker:
    workers = runtime.pool.workers
    assert len(workers) == 1, workers
    return workers[0]


class KeptOpen:
    """The runtime as a miner holds it, except that a drained miner's shutdown leaves its workers running: one
    miner's life spread over several `drain` calls (the fixture closes the runtime at the end)."""

    name = "embedding"

    def __init__(self, runtime: EmbeddingRuntime) -> None:
        self.runtime = runtime

    def models(self) -> list[str]:
        return self.runtime.models()

    async def run(self, context: JobContext) -> RuntimeResult:
        return await self.runtime.run(context)

    async def close(self) -> None:
        return None


async def stored(stack: InProcess, job_id: str) -> Job:
    """The job as stored, read without the API (a poll loop would hit the client's rate limit)."""
    job = await stack.coordinator.job_store.get_job(job_id)
    assert job is not None
    return job


async def drain(stack: InProcess, runtime: EmbeddingRuntime, **options: Any) -> None:
    await stack.drain({"embedding": KeptOpen(runtime)}, **options)


async def embed(stack: InProcess, runtime: EmbeddingRuntime, texts: str = "a cat\na dog") -> dict[str, Any]:
    job_id = await stack.submit(type="embedding", input=texts)
    await drain(stack, runtime)
    return await stack.job(job_id)


@needs_ai
async def test_the_worker_sees_python_its_models_and_its_job_folder_and_nothing_of_the_miner(
    stack: InProcess, runtime: EmbeddingRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AITBC_API_KEY", stack.miner_key)  # in the miner's environment, never in the worker's
    job = await embed(stack, runtime)
    assert job["status"] == "completed", job
    worker = only_worker(runtime)
    pid = worker_python(worker)
    root = Path(f"/proc/{pid}/root")

    miner = stack.root / "miners" / MINER
    other_job = runtime.pool.settings.exchanges.create().path  # another worker's folder, next to this one's
    secrets = [
        miner / "state",
        miner / "state" / "miner_ed25519.pem",
        miner / "jobs",
        stack.root / "data",
        other_job,
        worker.exchange.path,  # its own folder is at /job, not at its host path
        REPOSITORY / "pyproject.toml",
        REPOSITORY / "tests",
        Path("/root/.ssh"),
        Path("/var"),
        Path("/home"),
    ]
    assert (miner / "state" / "miner_ed25519.pem").exists() and (stack.root / "data").exists()
    assert [path for path in secrets if (root / str(path).lstrip("/")).exists()] == []
    allowed = {Path(folder).parts[1] for folder in (*SYSTEM_FOLDERS, *python_folders())}
    assert set(os.listdir(root)) <= allowed | {"etc", "dev", "proc", "tmp", "run", "job"}
    assert sorted(os.listdir(root / "job")) == []  # emptied after the job
    assert (root / "proc" / "1").exists() and len([name for name in os.listdir(root / "proc") if name.isdigit()]) <= 3

    environment = dict(
        entry.split("=", 1) for entry in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in entry
    )
    assert not any(stack.miner_key in value for value in environment.values())
    assert set(environment) <= {
        *OFFLINE_ENVIRONMENT,
        *THREAD_SETTINGS,
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "PWD",
    }
    assert "--api-key" not in Path(f"/proc/{pid}/cmdline").read_text()

    interfaces = [line.split(":")[0].strip() for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]]
    assert interfaces == ["lo"]
    user = HostUser.for_jobs()
    if user is not None:  # a root miner's worker runs as the job user, with no capabilities
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert status["Uid"].split() == [str(user.uid)] * 4
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        assert status["NoNewPrivs"].strip() == "1"


@needs_ai
async def test_the_worker_stays_warm_and_no_file_of_one_job_is_left_for_the_next(
    stack: InProcess, runtime: EmbeddingRuntime
) -> None:
    first = await embed(stack, runtime, "first job's secret text")
    assert first["status"] == "completed", first
    worker = only_worker(runtime)
    pid = worker_python(worker)
    assert worker.exchange.entries() == []

    # A file left in the exchange folder between jobs (by the worker, or anyone) is gone before the next job.
    (worker.exchange.path / "left-by-job-1.txt").write_text("first job's secret text")
    async with runtime.pool.worker() as same:
        assert same is worker
        assert sorted(os.listdir(Path(f"/proc/{pid}/root") / EXCHANGE.lstrip("/"))) == ["input", "output"]
        assert os.listdir(same.exchange.path / "input") == os.listdir(same.exchange.output) == []

    second = await embed(stack, runtime, "second job")
    assert second["status"] == "completed", second
    assert only_worker(runtime) is worker and worker_python(worker) == pid  # the same process: warm
    assert worker.exchange.entries() == []


@needs_ai
async def test_cancel_stops_the_worker_between_batches_and_keeps_it(
    stack: InProcess, runtime: EmbeddingRuntime
) -> None:
    warm = await embed(stack, runtime)
    assert warm["status"] == "completed", warm
    pid = worker_python(only_worker(runtime))
    job_id = await stack.submit(type="embedding", input="\n".join(f"sentence number {n}" for n in range(20000)))
    draining = asyncio.ensure_future(drain(stack, runtime, report_interval_seconds=0.2))
    while (await stored(stack, job_id)).progress == 0:
        await asyncio.sleep(0.1)
    answer = await stack.http.post(f"/v1/jobs/{job_id}/cancel", headers=stack.headers)
    assert answer.status_code in (200, 202), answer.text
    await draining

    job = await stack.job(job_id)
    assert job["status"] == "canceled", job
    _, files = await stack.package(job_id)
    summary = json.loads(files["result.txt"])
    assert 0 < summary["count"] < summary["requested"] == 20000
    assert worker_python(only_worker(runtime)) == pid  # it stopped when asked: not killed


@needs_ai
async def test_a_stuck_worker_is_killed_and_a_crashed_one_fails_only_its_job(
    stack: InProcess, runtime: EmbeddingRuntime
) -> None:
    warm = await embed(stack, runtime)
    assert warm["status"] == "completed", warm
    stuck = worker_python(only_worker(runtime))
    os.kill(stuck, signal.SIGSTOP)  # it will not answer the job, nor its cancel
    job_id = await stack.submit(type="embedding", input="never answered", timeout_seconds=1)
    await drain(stack, runtime)
    job = await stack.job(job_id)
    assert job["status"] == "failed" and job["failure_reason"] == "timeout", job
    assert not Path(f"/proc/{stuck}").exists() or "Z" in Path(f"/proc/{stuck}/stat").read_text().split()[2]
    assert runtime.pool.workers == []

    fresh = await embed(stack, runtime, "after the kill")
    assert fresh["status"] == "completed", fresh
    crashing = worker_python(only_worker(runtime))
    assert crashing != stuck
    os.kill(crashing, signal.SIGSTOP)
    job_id = await stack.submit(type="embedding", input="the worker dies under this one")
    draining = asyncio.ensure_future(drain(stack, runtime))
    while (await stored(stack, job_id)).status is not JobStatus.RUNNING:
        await asyncio.sleep(0.1)
    os.kill(crashing, signal.SIGKILL)
    await draining
    job = await stack.job(job_id)
    assert job["status"] == "failed" and job["failure_reason"] == "runtime_error", job
    assert "worker stopped unexpectedly" in job["error"]

    after = await embed(stack, runtime, "a fresh worker again")
    assert after["status"] == "completed", after
    assert worker_python(only_worker(runtime)) not in (stuck, crashing)


def test_the_worker_gets_pythons_folders_and_never_a_source_tree_or_the_current_folder() -> None:
    folders = python_folders()
    assert sys.prefix in folders or any(sys.prefix.startswith(folder + "/") for folder in folders)
    for folder in folders:
        assert not (Path(folder) == REPOSITORY or Path(folder) in REPOSITORY.parents), folder
        assert Path(folder) != Path.cwd()
    import aitbc

    package = str(Path(aitbc.__file__).resolve().parent)
    assert any(package == folder or package.startswith(folder + "/") for folder in folders)


def test_a_root_miners_worker_drops_to_the_job_user(tmp_path: Path) -> None:
    spec = worker_spec(tmp_path, [], ())
    assert worker_argv(spec, None) == bwrap_argv(spec)
    argv = worker_argv(spec, HostUser(uid=65534, gid=65534))
    separator = argv.index("--")
    assert "--unshare-user" not in argv[:separator] and "--unshare-pid" in argv[:separator]
    assert argv[separator + 1].endswith("setpriv")
    drop = argv[separator + 1 : argv.index("--", separator + 1)]
    assert {"--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs", "--bounding-set=-all"} <= set(drop)
    assert argv[-3:] == ["-I", "-m", "aitbc.miner.worker"]


def test_the_worker_may_write_only_its_output_folder_and_the_miner_never_follows_its_links(tmp_path: Path) -> None:
    user = HostUser.for_jobs()
    folders = ExchangeFolders.at(tmp_path / "workers", user)
    exchange = folders.create()
    assert exchange.prepare()
    assert exchange.entries() == ["input", "output"]
    if user is not None:  # the exchange folder and input/ stay the miner's: the worker cannot swap them for links
        assert exchange.path.stat().st_uid == (exchange.path / "input").stat().st_uid == os.geteuid()
        assert exchange.output.stat().st_uid == user.uid

    outside = tmp_path / "outside.txt"
    (exchange.path / "input" / "texts.json").symlink_to(outside)
    with pytest.raises(FileExistsError):
        exchange.put("texts.json", b"[]")
    assert not outside.exists()
    (exchange.output / "embeddings.npy").symlink_to("/etc/passwd")
    with (
        pytest.raises(JobFailed, match=r"wrote no embeddings\.npy"),
        exchange.open_output("embeddings.npy", "embedding"),
    ):
        pass
    assert not exchange.copy_output("embeddings.npy", tmp_path / "copied")

    sealed = exchange.output / "sealed"
    (sealed / "inner").mkdir(parents=True)
    (sealed / "inner" / "file").write_text("left behind")
    sealed.chmod(0o500)
    assert exchange.clear() and exchange.entries() == []
    assert Path("/etc/passwd").exists()

    left = folders.create()  # a miner that restarts removes what its last run left
    ExchangeFolders.at(tmp_path / "workers", user)
    assert not left.path.exists() and not exchange.path.exists()
