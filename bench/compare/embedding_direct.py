"""The embedding job's work with no coordinator, miner or worker: the packaged all-MiniLM-L6-v2 model's
`encode` of one short text, warm, in this process. Prints a JSON list of milliseconds.

    OMP_NUM_THREADS=1 .venv/bin/python bench/compare/embedding_direct.py --runs 50
"""

from __future__ import annotations

import argparse
import json
import time

from aitbc.miner.runtimes.models import packaged_embedding_models

TEXT = "a cat sits on the mat"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    options = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_embedding_models()["all-MiniLM-L6-v2"]), device="cpu")
    model.encode([TEXT])
    times = []
    for _ in range(options.runs):
        started = time.perf_counter()
        model.encode([TEXT], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        times.append((time.perf_counter() - started) * 1000)
    print(json.dumps(times))


if __name__ == "__main__":
    main()
