"""A no-op miner in its own process: the miner protocol alone (register, then claim, start and complete with
no files). It claims up to 8 jobs a call with a short long-poll and batches as the agent does with several
slots: the claim also starts the jobs (`"start": true`) and one call completes all of them
(`POST /v1/miners/{id}/jobs/complete`); `--per-job` starts and completes each job with its own calls instead, as
`bench/lifecycle_throughput.py` does. It exits once the `--stop-file` exists and a claim comes back empty.

    .venv/bin/python bench/compare/noop_miner.py --url http://127.0.0.1:8000 --key aitbc_… --stop-file stop

Prints one JSON line: how many jobs it finished, and the wall-clock times of its first and last completion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.manifest import public_key_text


async def finish_per_job(miner: httpx.AsyncClient, miner_id: str, claimed: list[dict[str, str]]) -> None:
    for job in claimed:
        base = f"/v1/miners/{miner_id}/jobs/{job['job_id']}"
        (await miner.post(f"{base}/start", json={"lease_id": job["lease_id"]})).raise_for_status()
        (await miner.post(f"{base}/complete", json={"lease_id": job["lease_id"]})).raise_for_status()


async def finish_batched(miner: httpx.AsyncClient, miner_id: str, claimed: list[dict[str, str]]) -> None:
    """The claim started them; one call completes them all, with a result per job."""
    items = [{"job_id": job["job_id"], "lease_id": job["lease_id"]} for job in claimed]
    answer = await miner.post(f"/v1/miners/{miner_id}/jobs/complete", json={"jobs": items})
    answer.raise_for_status()
    refused = [result for result in answer.json()["results"] if result.get("error")]
    if refused:
        raise RuntimeError(f"the coordinator refused {len(refused)} completions: {refused[0]}")


async def work(url: str, key: str, name: str, stop_file: Path, max_jobs: int, per_job: bool) -> dict[str, float]:
    done = 0
    first = last = 0.0
    async with httpx.AsyncClient(base_url=url, headers={"X-Api-Key": key}, timeout=60) as miner:
        registered = await miner.post(
            "/v1/miners/register",
            json={"name": name, "runtimes": ["command"], "public_key": public_key_text(Ed25519PrivateKey.generate())},
        )
        registered.raise_for_status()
        miner_id = registered.json()["miner_id"]
        print(json.dumps({"ready": True}), flush=True)
        while True:
            claim = {"max_jobs": max_jobs, "wait_seconds": 1, "start": not per_job}
            answer = await miner.post(f"/v1/miners/{miner_id}/claim", json=claim)
            answer.raise_for_status()
            claimed = answer.json()["jobs"]
            if not claimed and stop_file.exists():
                break
            if not claimed:
                continue
            await (finish_per_job if per_job else finish_batched)(miner, miner_id, claimed)
            last = time.time()
            first = first or last
            done += len(claimed)
    return {"done": done, "first": first, "last": last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--name", default="bench-noop")
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--max-jobs", type=int, default=8)
    parser.add_argument("--per-job", action="store_true", help="start and complete each job with its own calls")
    options = parser.parse_args()
    found = asyncio.run(
        work(options.url, options.key, options.name, options.stop_file, options.max_jobs, options.per_job)
    )
    print(json.dumps(found), flush=True)


if __name__ == "__main__":
    main()
