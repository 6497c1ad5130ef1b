"""The Ollama backend of `text-generation` against a stand-in server that speaks Ollama's HTTP API
(`/api/tags`, streamed `/api/generate`): Ollama itself cannot be installed on this machine, so this checks
the protocol as Ollama documents it, through the real agent and the real coordinator app."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.text_generation import TextGenerationRuntime
from tests.miner.inprocess import InProcess, in_process
from tests.support.served import free_port


class StandIn:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.disconnected = threading.Event()

    async def tags(self, request: Request) -> JSONResponse:
        return JSONResponse({"models": [{"name": "llama3:8b", "size": 1}, {"name": "tinyllama:latest", "size": 1}]})

    async def generate(self, request: Request) -> StreamingResponse:
        body = await request.json()
        self.requests.append(body)
        count = int(body["options"]["num_predict"])
        delay = 0.2 if body["prompt"] == "slow" else 0.0

        async def lines() -> AsyncIterator[bytes]:
            try:
                for number in range(count):
                    await asyncio.sleep(delay)
                    yield (
                        json.dumps({"model": body["model"], "response": f"w{number} ", "done": False}).encode() + b"\n"
                    )
                final = {"done": True, "done_reason": "length", "prompt_eval_count": 4, "eval_count": count}
                yield json.dumps(final).encode() + b"\n"
            except asyncio.CancelledError:
                self.disconnected.set()
                raise

        return StreamingResponse(lines(), media_type="application/x-ndjson")


@pytest.fixture
def ollama() -> Iterator[tuple[str, StandIn]]:
    stand_in = StandIn()
    app = Starlette(
        routes=[Route("/api/tags", stand_in.tags), Route("/api/generate", stand_in.generate, methods=["POST"])]
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", stand_in
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


async def test_ollama_models_are_served_and_generate_with_the_jobs_params(
    stack: InProcess, tmp_path: Path, ollama: tuple[str, StandIn]
) -> None:
    url, stand_in = ollama
    runtime = TextGenerationRuntime.create(
        MinerConfig(url="x", api_key="y", name="t", work_dir=tmp_path, ollama_url=url)
    )
    assert runtime.models() == ["llama3:8b", "tinyllama:latest"]
    job_id = await stack.submit(
        type="text-generation",
        model="llama3:8b",
        input="why is the sky blue?",
        params={"max_tokens": 6, "temperature": 0.2, "top_p": 0.5},
    )
    await stack.drain({"text-generation": runtime})

    job = await stack.job(job_id)
    assert job["status"] == "completed", job
    _, files = await stack.package(job_id)
    assert files["result.txt"] == b"w0 w1 w2 w3 w4 w5 "
    output = json.loads(files["output.json"])
    assert output["tokens"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    assert stand_in.requests == [
        {
            "model": "llama3:8b",
            "prompt": "why is the sky blue?",
            "stream": True,
            "options": {"num_predict": 6, "temperature": 0.2, "top_p": 0.5},
        }
    ]


async def test_cancelling_an_ollama_job_closes_its_stream(
    stack: InProcess, tmp_path: Path, ollama: tuple[str, StandIn]
) -> None:
    url, stand_in = ollama
    runtime = TextGenerationRuntime.create(
        MinerConfig(url="x", api_key="y", name="t", work_dir=tmp_path, ollama_url=url)
    )
    job_id = await stack.submit(
        type="text-generation", model="tinyllama:latest", input="slow", params={"max_tokens": 500}
    )
    miner = asyncio.create_task(stack.drain({"text-generation": runtime}))
    deadline = time.monotonic() + 20
    while (await stack.job(job_id))["progress"] == 0:
        assert time.monotonic() < deadline, "the job never made progress"
        await asyncio.sleep(0.1)
    answer = await stack.http.post(f"/v1/jobs/{job_id}/cancel", headers=stack.headers)
    assert answer.json()["outcome"] == "canceling"
    await asyncio.wait_for(miner, timeout=20)
    job = await stack.job(job_id)
    assert job["status"] == "canceled"
    assert await asyncio.to_thread(stand_in.disconnected.wait, 5)
    _, files = await stack.package(job_id)
    assert json.loads(files["output.json"])["status"] == "canceled"
