"""What running the embedding model in the sandboxed AI worker costs per job, against calling the model in
the miner's own process: one short text per job, the model warm in both.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/embedding_worker.py [--runs 30]

Times `EmbeddingRuntime.run` (input checked, exchange folder prepared, request and answers over the pipe,
vectors read back and packaged) and `SentenceTransformer.encode` on the same text; prints the median and
the 90th percentile of each, and the worker's first job (its start and the model's load). On a busy machine
give both sides one math thread (the worker inherits OMP_NUM_THREADS): torch's spinning threads otherwise
measure the machine's load, not the worker (a 2-core box under load: 600-900 ms per encode with 2 threads,
about 40 with 1).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aitbc.miner.config import MinerConfig
from aitbc.miner.package import PackageLayout
from aitbc.miner.runtimes.embedding import EmbeddingRuntime
from aitbc.miner.runtimes.interface import JobContext
from aitbc.miner.runtimes.models import packaged_embedding_models
from aitbc.miner.stop import StopSignal
from aitbc.protocol.miners import Assignment

TEXT = "a cat sits on the mat"


class Lines:
    """Where a job's log lines and progress go: nowhere (no coordinator in this measurement)."""

    def line(self, stream: str, text: str) -> None:
        return None

    def progress(self, percent: float, message: str | None = None) -> None:
        return None


def context(root: Path, number: int) -> JobContext:
    assignment = Assignment.model_validate(
        {
            "job_id": f"job_bench{number:06d}",
            "lease_id": "lease",
            "type": "embedding",
            "model": "all-MiniLM-L6-v2",
            "input": TEXT,
            "params": {},
            "timeout_seconds": 60,
            "attempt": 1,
            "input_file": None,
            "requirements": {},
            "priority": "normal",
            "lease_expires_at": "2100-01-01T00:00:00Z",
        }
    )
    layout = PackageLayout(root / f"job{number}")
    layout.create()
    made: Any = Lines()
    return JobContext(assignment, root, layout, made, StopSignal(), time.monotonic() + 60)


def summary(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"{name:<34} median {1000 * statistics.median(seconds):7.1f} ms   p90 {1000 * p90:7.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    runtime = EmbeddingRuntime.create(MinerConfig(url="http://unused", api_key="unused", name="b", work_dir=root))
    try:
        started = time.perf_counter()
        await runtime.run(context(root, 0))
        first = time.perf_counter() - started
        through_worker = []
        for number in range(1, options.runs + 1):
            started = time.perf_counter()
            await runtime.run(context(root, number))
            through_worker.append(time.perf_counter() - started)
    finally:
        await runtime.close()

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_embedding_models()["all-MiniLM-L6-v2"]), device="cpu")
    model.encode([TEXT])
    direct = []
    for _ in range(options.runs):
        started = time.perf_counter()
        model.encode([TEXT], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        direct.append(time.perf_counter() - started)

    print(f"{'first job (worker start + model load)':<34} {1000 * first:7.0f} ms")
    print(summary("job through the warm worker", through_worker))
    print(summary("model.encode in-process", direct))


if __name__ == "__main__":
    asyncio.run(main())
