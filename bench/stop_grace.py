"""How long a miner takes to stop when its job outlasts the shutdown grace: from `request_stop()` to the agent
returning, with the job handed back to the queue. (The test suite checks that it is handed back; this measures
how long it takes.)

    PYTHONPATH=. .venv/bin/python bench/stop_grace.py [--runs 3] [--grace 0.2]

The real coordinator app in-process, a real agent with the sandboxed command runtime, a `sleep 600` job.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tests.miner.inprocess import InProcess, in_process

from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.command import CommandRuntime
from aitbc.miner.sandboxed_run import Isolation


async def wait_running(stack: InProcess, job_id: str) -> None:
    while (await stack.job(job_id))["status"] != "running":
        await asyncio.sleep(0.05)


async def one_run(root: Path, grace: float) -> tuple[float, dict[str, object]]:
    async with in_process(root) as stack:
        config = MinerConfig(url="http://unused", api_key="unused", name="bench", work_dir=root / "miners" / "bench")
        runtimes = {"command": CommandRuntime(Isolation.for_miner(config), kill_grace_seconds=0.5)}
        job_id = await stack.submit(type="command", input="sleep 600")
        agent = stack.agent(runtimes, name="bench", drain=False, shutdown_grace_seconds=grace)
        running = asyncio.create_task(agent.run())
        await asyncio.wait_for(wait_running(stack, job_id), timeout=60)
        started = time.perf_counter()
        agent.request_stop()
        await asyncio.wait_for(running, timeout=120)
        return time.perf_counter() - started, await stack.job(job_id)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--grace", type=float, default=0.2)
    options = parser.parse_args()
    for run in range(options.runs):
        seconds, job = await one_run(Path(tempfile.mkdtemp()) / f"run-{run}", options.grace)
        print(
            f"grace {options.grace:.1f} s: the agent stopped {seconds:.2f} s after request_stop; "
            f"the job is {job['status']} (attempt {job['attempt']})"
        )


if __name__ == "__main__":
    asyncio.run(main())
