"""The AI worker sees the GPUs of the job it runs and no others: warm workers are kept per GPU set, a job given
none runs in a worker with no GPU device at all, and the workers alive stay within the miner's `max_jobs`.

There is no GPU here: the device nodes are stand-in files in a folder of their own (the worker's `dev`), bound
into real sandboxed workers that run the packaged all-MiniLM-L6-v2 (on the CPU)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitbc.domain.matching import Gpu
from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.embedding import EmbeddingRuntime
from aitbc.miner.runtimes.interface import JobContext, RuntimeResult
from aitbc.miner.sandbox import HostUser, bwrap_argv
from aitbc.miner.worker.pool import Worker, WorkerPool
from aitbc.miner.worker.sandboxing import worker_argv, worker_spec
from tests.miner.ai_extra import needs_ai
from tests.miner.inprocess import InProcess, in_process
from tests.miner.test_ai_worker import MINER, KeptOpen, worker_python

TWO_GPUS = (Gpu("t4", 16), Gpu("t4", 16))
DEVICE_NAMES = ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm")


def fake_dev(tmp_path: Path) -> Path:
    """Stand-ins for a two-GPU machine's device nodes (the shared ones included)."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in DEVICE_NAMES:
        (dev / name).touch()
    return dev


def bound(argv: list[str]) -> list[str]:
    return [argv[index + 1] for index, option in enumerate(argv) if option == "--dev-bind"]


def test_a_worker_for_gpu_1_of_2_binds_that_gpu_and_the_shared_nodes_only(tmp_path: Path) -> None:
    dev = fake_dev(tmp_path)
    spec = worker_spec(tmp_path, [], (1,), dev)
    assert spec.environment["CUDA_VISIBLE_DEVICES"] == "1"
    assert spec.environment["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    for user in (None, HostUser(uid=65534, gid=65534)):  # a miner as itself, and a root miner's job user
        argv = worker_argv(spec, user) if user is not None else bwrap_argv(spec, bwrap="bwrap")
        assert bound(argv) == [str(dev / name) for name in ("nvidia1", "nvidiactl", "nvidia-uvm")]
        assert str(dev / "nvidia0") not in argv

    both = worker_spec(tmp_path, [], (0, 1), dev)
    assert both.environment["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert bound(bwrap_argv(both, bwrap="bwrap")) == [str(dev / name) for name in DEVICE_NAMES]


def test_a_cpu_jobs_worker_has_no_gpu_device_and_cuda_sees_none(tmp_path: Path) -> None:
    dev = fake_dev(tmp_path)
    spec = worker_spec(tmp_path, [], (), dev)
    assert spec.devices == ()
    assert spec.environment["CUDA_VISIBLE_DEVICES"] == ""
    argv = bwrap_argv(spec, bwrap="bwrap")
    assert bound(argv) == [] and not any("nvidia" in argument for argument in argv)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


@pytest.fixture
async def runtime(stack: InProcess, tmp_path: Path) -> AsyncIterator[EmbeddingRuntime]:
    """The embedding runtime of a two-GPU miner that runs two jobs at once, its GPUs' nodes the stand-ins."""
    config = MinerConfig(
        url="http://unused",
        api_key="unused",
        name=MINER,
        work_dir=stack.root / "miners" / MINER,
        max_jobs=2,
        gpus=TWO_GPUS,
    )
    made = EmbeddingRuntime.create(config)
    made.pool.settings = dataclasses.replace(made.pool.settings, dev=fake_dev(tmp_path))
    yield made
    await made.close()


def sandbox_view(worker: Worker, dev: Path) -> tuple[list[str], str | None]:
    """The stand-in device nodes the worker's Python sees, and its CUDA_VISIBLE_DEVICES."""
    pid = worker_python(worker)
    inside = Path(f"/proc/{pid}/root") / str(dev).lstrip("/")
    nodes = sorted(os.listdir(inside)) if inside.is_dir() else []
    environment = dict(
        entry.split("=", 1) for entry in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in entry
    )
    return nodes, environment.get("CUDA_VISIBLE_DEVICES")


def by_gpus(runtime: EmbeddingRuntime) -> dict[tuple[int, ...], Worker]:
    workers = runtime.pool.workers
    found = {worker.gpus: worker for worker in workers}
    assert len(found) == len(workers), [worker.gpus for worker in workers]  # one warm worker per set here
    return found


async def run_jobs(stack: InProcess, runtime: EmbeddingRuntime, count: int, gpus: tuple[Gpu, ...] = TWO_GPUS) -> None:
    """Submit `count` embedding jobs (each wants one GPU, the default), then let a miner with `gpus` take them
    all at once and run them."""
    jobs = [await stack.submit(type="embedding", input=f"job {index}") for index in range(count)]
    await stack.drain({"embedding": KeptOpen(runtime)}, gpus=gpus, max_jobs=2)
    for job_id in jobs:
        job = await stack.job(job_id)
        assert job["status"] == "completed", job


@needs_ai
async def test_jobs_on_different_gpus_run_in_different_workers_and_the_same_gpu_reuses_its_warm_one(
    stack: InProcess, runtime: EmbeddingRuntime
) -> None:
    dev = runtime.pool.settings.dev
    await run_jobs(stack, runtime, 2)  # claimed together: one gets GPU 0, the other GPU 1
    workers = by_gpus(runtime)
    assert sorted(workers) == [(0,), (1,)]
    assert sandbox_view(workers[(0,)], dev) == (["nvidia-uvm", "nvidia0", "nvidiactl"], "0")
    assert sandbox_view(workers[(1,)], dev) == (["nvidia-uvm", "nvidia1", "nvidiactl"], "1")
    first, second = worker_python(workers[(0,)]), worker_python(workers[(1,)])

    await run_jobs(stack, runtime, 1)  # alone: the least busy GPU is 0, whose worker is warm
    assert by_gpus(runtime) == workers
    assert worker_python(workers[(0,)]) == first and worker_python(workers[(1,)]) == second

    # The same runtime on a miner run without GPUs: a CPU job, in a worker of its own that stands in for the
    # least recently used one.
    await run_jobs(stack, runtime, 1, gpus=())
    after = by_gpus(runtime)
    assert sorted(after) == [(), (0,)]
    assert after[(0,)] is workers[(0,)] and worker_python(after[(0,)]) == first
    assert workers[(1,)].process.returncode is not None  # GPU 1's worker was stopped to make room
    assert sandbox_view(after[()], dev) == ([], "")


@needs_ai
async def test_the_workers_alive_stay_within_max_jobs_a_job_waits_for_room(
    stack: InProcess, runtime: EmbeddingRuntime
) -> None:
    pool = runtime.pool
    pool.settings = dataclasses.replace(pool.settings, max_workers=1)
    leave = asyncio.Event()
    entered: list[Worker] = []

    async def job(pool: WorkerPool, gpus: tuple[int, ...]) -> None:
        async with pool.worker(gpus) as worker:
            entered.append(worker)
            await leave.wait()

    holding = asyncio.ensure_future(job(pool, (0,)))
    while not entered:
        await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(job(pool, (1,)))
    for _ in range(20):  # many turns of the loop: had it started a worker, one would be starting now
        await asyncio.sleep(0)
    assert pool.alive == 1 and len(entered) == 1 and not waiting.done()

    leave.set()
    await asyncio.gather(holding, waiting)
    assert [worker.gpus for worker in entered] == [(0,), (1,)]
    assert entered[0].process.returncode is not None  # stopped for GPU 1's worker
    assert pool.workers == [entered[1]] and pool.alive == 1


class Recording:
    """A runtime that only notes the device and GPUs each job is given."""

    name = "embedding"

    def __init__(self) -> None:
        self.given: list[tuple[str, tuple[int, ...]]] = []

    def models(self) -> list[str]:
        return []

    async def run(self, context: JobContext) -> RuntimeResult:
        self.given.append((context.device, context.gpus))
        context.package.result_file.write_text("noted\n")
        return RuntimeResult(exit_code=0)

    async def close(self) -> None:
        return None


async def test_the_device_a_job_is_told_to_use_follows_its_gpus(stack: InProcess) -> None:
    recording = Recording()
    for gpus in (TWO_GPUS, ()):
        job_id = await stack.submit(type="embedding", input="which device?")
        await stack.drain({"embedding": recording}, gpus=gpus)
        assert (await stack.job(job_id))["status"] == "completed"
    assert recording.given == [("cuda", (0,)), ("cpu", ())]
