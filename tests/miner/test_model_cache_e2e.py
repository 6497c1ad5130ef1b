"""Warm models and fair bills, with the real sandboxed embedding worker, a real miner agent and the real
coordinator app: a job is billed from the moment its model is ready (its receipt says how long loading took,
and whether the model was warm), and a model cache with room for one model swaps two models used in turn,
unloading (and freeing) the other each time, with the same vectors as ever."""

from __future__ import annotations

import asyncio
import io
import json
import math
import shutil
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.embedding import EmbeddingRuntime
from aitbc.miner.runtimes.interface import JobContext, RuntimeResult
from aitbc.miner.worker.pool import Worker
from tests.miner.ai_extra import needs_ai
from tests.miner.inprocess import InProcess, in_process

MINER = "in-process"
PACKAGED = "all-MiniLM-L6-v2"
COPY = "my-minilm"
ONE_MODEL = 150 * 2**20  # all-MiniLM-L6-v2 takes about 87 MiB: room for one, not two


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


def copied_model(tmp_path: Path) -> Path:
    """A second embedding model: the packaged one's files under another name, readable by a root miner's
    worker (which runs as nobody)."""
    from aitbc.miner.runtimes.models import packaged_embedding_models

    copy = tmp_path / COPY
    shutil.copytree(packaged_embedding_models()[PACKAGED], copy)
    for path in (copy, *copy.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return copy


class KeptOpen:
    """The runtime as the miner holds it, but left running when a drained agent stops: one miner's life
    spread over several `drain` calls (the test closes the runtime)."""

    name = "embedding"

    def __init__(self, runtime: EmbeddingRuntime) -> None:
        self.runtime = runtime

    def models(self) -> list[str]:
        return self.runtime.models()

    async def run(self, context: JobContext) -> RuntimeResult:
        return await self.runtime.run(context)

    async def close(self) -> None:
        return None


async def embed(stack: InProcess, runtime: EmbeddingRuntime, model: str, texts: list[str]) -> str:
    job_id = await stack.submit(type="embedding", model=model, input=json.dumps(texts))
    await stack.drain({"embedding": KeptOpen(runtime)})
    job = await stack.job(job_id)
    assert job["status"] == "completed", job
    return job_id


async def receipt(stack: InProcess, job_id: str) -> dict[str, Any]:
    answer = await stack.http.get(f"/v1/jobs/{job_id}/receipt", headers=stack.headers)
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()["receipt"]
    return document


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def said(worker: Worker, text: str) -> list[str]:
    """The worker's stderr lines holding `text`, once it has said so (its stderr is read as it comes)."""
    for _ in range(200):
        found = [line for line in worker._stderr if text in line]
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"the worker never said {text!r}: {list(worker._stderr)}")


@needs_ai
async def test_a_job_is_billed_from_its_model_being_ready_and_the_receipt_says_how_long_loading_took(
    stack: InProcess,
) -> None:
    config = MinerConfig(url="http://unused", api_key="unused", name=MINER, work_dir=stack.root / "miners" / MINER)
    runtime = EmbeddingRuntime.create(config)
    try:
        cold_id = await embed(stack, runtime, PACKAGED, ["a cat sits on the mat"])
        warm_id = await embed(stack, runtime, PACKAGED, ["a dog sleeps on the rug"])
    finally:
        await runtime.close()

    cold = await receipt(stack, cold_id)
    timings = cold["resources"]["timings"]
    assert timings["model_warm"] is False and timings["model_load_seconds"] > 0
    assert timings["upload_seconds"] is not None and timings["setup_seconds"] >= 0
    times = cold["charge"]["times"]
    assert times["billed"] == times["reported_by_miner"], "the miner's report is inside what the coordinator saw"
    # The bill starts once the model was ready: after the job's start and the whole model load.
    waited = (
        moment(times["billed"]["started_at"]) - moment(times["observed_by_coordinator"]["started_at"])
    ).total_seconds()
    assert waited >= timings["model_load_seconds"] - 0.002
    billed = (moment(times["billed"]["ended_at"]) - moment(times["billed"]["started_at"])).total_seconds()
    assert abs(billed - timings["run_seconds"]) <= 0.002
    assert cold["charge"]["billed_seconds"] <= math.ceil(timings["run_seconds"] + 0.002)
    assert (await stack.job(cold_id))["billed_seconds"] == cold["charge"]["billed_seconds"]

    warm = (await receipt(stack, warm_id))["resources"]["timings"]
    assert warm["model_warm"] is True and warm["model_load_seconds"] == 0.0
    _, files = await stack.package(warm_id)
    assert json.loads(files["output.json"])["timings"]["model_warm"] is True


@needs_ai
async def test_a_cache_with_room_for_one_model_swaps_two_models_used_in_turn(stack: InProcess, tmp_path: Path) -> None:
    import numpy as np

    config = MinerConfig(
        url="http://unused",
        api_key="unused",
        name=MINER,
        work_dir=stack.root / "miners" / MINER,
        models={COPY: copied_model(tmp_path)},
        model_cache_bytes=ONE_MODEL,
    )
    runtime = EmbeddingRuntime.create(config)
    cache = runtime.pool.settings.cache
    texts = ["a cat sits on the mat", "stock markets fell sharply"]
    jobs: list[tuple[str, str]] = []
    try:
        for model in (PACKAGED, COPY, PACKAGED, PACKAGED):
            jobs.append((model, await embed(stack, runtime, model, texts)))
            (worker,) = runtime.pool.workers
            assert cache.held() == [str(runtime._folders[model])], "only the model just used is kept"
            assert 0 < cache.used_bytes <= ONE_MODEL
        # The worker freed each model it unloaded: no reference to it was left behind.
        unloaded = await said(worker, "unloaded")
        assert len(unloaded) == 2 and all(line.endswith(": freed") for line in unloaded), unloaded
    finally:
        await runtime.close()

    warm = [(await receipt(stack, job_id))["resources"]["timings"]["model_warm"] for _, job_id in jobs]
    assert warm == [False, False, False, True]
    vectors = []
    for _, job_id in jobs:
        _, files = await stack.package(job_id)
        vectors.append(np.load(io.BytesIO(files["artifacts/embeddings.npy"])))
    for other in vectors[1:]:  # the same weights under two names, loaded three times: the same vectors
        assert other.shape == (2, 384) and np.allclose(other, vectors[0], atol=1e-5)
