"""The submission guide's marketplace commands as it writes them — `aitbc marketplace gpu list [--model gpt2
--region us-west]`, `aitbc client submit … --gpu-type rtx4090 --use-marketplace`, `… --agent-id agent_456` —
against a real coordinator on a socket (uvicorn in a thread), miners speaking the real HTTP protocol."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from aitbc import AsyncClient, Client
from aitbc.cli.main import app
from tests.support.protocol_miner import HttpMiner
from tests.support.served import served_for_cli

# The guide's GPU and model, and a miner named as its `--agent-id agent_456`.
FLEET: dict[str, dict[str, Any]] = {
    "agent_456": {
        "region": "us-west",
        "gpus": [{"model": "NVIDIA GeForce RTX 4090", "vram_gb": 24}],
        "runtimes": ["text-generation"],
        "models": ["gpt2"],
    },
    "west-a100": {
        "region": "us-west",
        "gpus": [{"model": "A100", "vram_gb": 80}],
        "runtimes": ["text-generation"],
        "models": ["gpt2"],
    },
    "east-3090": {
        "region": "us-east",
        "gpus": [{"model": "RTX 3090", "vram_gb": 24}],
        "runtimes": ["text-generation"],
        "models": ["llama"],
    },
}


@dataclass
class Market:
    url: str
    http: httpx.Client  # with the client's key: what the CLI stored
    miner_key: str
    miner_ids: dict[str, str]

    def claim(self, name: str) -> list[dict[str, Any]]:
        response = httpx.post(
            f"{self.url}/v1/miners/{self.miner_ids[name]}/claim",
            json={"max_jobs": 4, "wait_seconds": 0},
            headers={"X-Api-Key": self.miner_key},
        )
        assert response.status_code == 200, response.text
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs

    def jobs(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.http.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
        return found


async def _register(url: str, miner_key: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        miners = [HttpMiner(http, miner_key, name=name, **spec) for name, spec in FLEET.items()]
        return {miner.name: await miner.register() for miner in miners}


@pytest.fixture
def market(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Market]:
    with served_for_cli(tmp_path, monkeypatch) as served:
        monkeypatch.chdir(tmp_path)
        Path("data.txt").write_text("What is machine learning?\n")
        miner_ids = asyncio.run(_register(served.url, served.miner_key))
        with httpx.Client(base_url=served.url, headers={"X-Api-Key": served.client_key}, timeout=30) as http:
            yield Market(served.url, http, served.miner_key, miner_ids)


def aitbc(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_marketplace_gpu_list(market: Market) -> None:
    code, out, _ = aitbc("marketplace", "gpu", "list")
    assert code == 0, out
    assert "3 miners on offer" in out
    for shown in ("agent_456", "1× NVIDIA GeForce RTX 4090 24 GB", "1/1 GPUs", "0.04", "east-3090", "0.03", "us-west"):
        assert shown in out
    assert out.index("east-3090") < out.index("agent_456") < out.index("west-a100")  # cheapest first
    code, out, _ = aitbc("marketplace", "gpu", "list", "--json")
    offers = json.loads(out)["offers"]
    assert [(o["name"], o["price_per_hour"], o["queue"]) for o in offers] == [
        ("east-3090", "0.03", 0),
        ("agent_456", "0.04", 0),
        ("west-a100", "0.10", 0),
    ]


def test_marketplace_gpu_list_by_model_and_region(market: Market) -> None:
    code, out, _ = aitbc("marketplace", "gpu", "list", "--model", "gpt2", "--region", "us-west")
    assert code == 0, out
    assert "agent_456" in out and "west-a100" in out and "east-3090" not in out
    code, out, err = aitbc("marketplace", "gpu", "list", "--model", "gpt2", "--region", "us-east")
    assert code == 0 and "No miner is on offer now for model gpt2 region us-east" in err
    code, _, err = aitbc("marketplace", "gpu", "list", "--region", "us west")
    assert code == 1 and "region" in err


def test_submit_with_marketplace_gpu_as_the_guide_writes_it(market: Market) -> None:
    args = ("client", "submit", "--model", "gpt2", "--input", "data.txt", "--gpu-type", "rtx4090", "--use-marketplace")
    code, out, err = aitbc(*args)
    assert code == 0, err
    job_id = out.strip()
    assert job_id.startswith("job_")
    assert "Marketplace: rtx4090 on 1 miner (1 GPU free, queue 0) at 0.04 AITBC/h" in err
    assert "holds at most 0.040000000 AITBC" in err
    (job,) = market.jobs()
    assert (job["job_id"], job["model"], job["requirements"]["gpu_type"]) == (job_id, "gpt2", "rtx4090")
    assert market.claim("west-a100") == []  # an A100 is not the RTX 4090 it was quoted and submitted for
    assert [taken["job_id"] for taken in market.claim("agent_456")] == [job_id]


def test_use_marketplace_picks_the_cheapest_gpu_on_offer(market: Market) -> None:
    code, out, err = aitbc("client", "submit", "--model", "gpt2", "--input", "data.txt", "--use-marketplace", "--json")
    assert code == 0, err
    assert json.loads(out)["requirements"]["gpu_type"] == "rtx4090"  # 0.04 beats the A100's 0.10
    assert "also on offer: a100 0.10/h" in err


def test_nothing_on_offer_submits_nothing(market: Market) -> None:
    for extra in (("--model", "mistral"), ("--model", "gpt2", "--gpu-type", "v100")):
        code, out, err = aitbc("client", "submit", "--input", "data.txt", "--use-marketplace", *extra)
        assert code == 1, out
        assert "nothing on the marketplace can run this job" in err and "Nothing was submitted" in err
    assert "no connected miner has a v100 GPU" in err
    assert market.jobs() == []


def test_submit_to_a_specific_agent_as_the_guide_writes_it(market: Market) -> None:
    code, out, err = aitbc("client", "submit", "--model", "gpt2", "--input", "data.txt", "--agent-id", "agent_456")
    assert code == 0, err
    job_id = out.strip()
    code, out, _ = aitbc("client", "status", "--job-id", job_id)
    assert f"pinned to {market.miner_ids['agent_456']}" in out and "waiting for its miner 'agent_456'" in out
    assert market.claim("west-a100") == []  # it can run gpt2 too, but the job is not its
    assert [taken["job_id"] for taken in market.claim("agent_456")] == [job_id]
    code, _, err = aitbc("client", "submit", "--model", "gpt2", "--input", "data.txt", "--agent-id", "agent_123")
    assert code == 1 and "no miner is named 'agent_123'" in err
    code, _, err = aitbc("client", "submit", "--model", "gpt2", "--input", "x", "--agent-id", "east-3090")
    assert code == 1 and "cannot run this job: model 'gpt2' not served" in err
    assert len(market.jobs()) == 1


def test_gpu_and_gpu_type_are_one_option(market: Market) -> None:
    for spelling in ("--gpu", "--gpu-type"):
        code, out, err = aitbc("client", "submit", "--model", "gpt2", "--input", "hi", spelling, "rtx4090", "--json")
        assert code == 0, err
        assert json.loads(out)["requirements"]["gpu_type"] == "rtx4090"
    assert [job["requirements"]["gpu_type"] for job in market.jobs()] == ["rtx4090", "rtx4090"]


def on_terminal(*args: str, typed: bytes) -> tuple[int, bytes, bytes]:
    """`aitbc ARGS` with a real terminal (a pty) as stdin and stderr, `typed` typed on it; stdout piped. Its exit
    code, its stdout, and what the terminal showed."""
    command = [sys.executable, "-c", "from aitbc.cli.main import main; main()", *args]
    leader, follower = pty.openpty()
    with subprocess.Popen(command, stdin=follower, stdout=subprocess.PIPE, stderr=follower, env=os.environ) as process:
        os.close(follower)
        os.write(leader, typed)
        out, _ = process.communicate(timeout=60)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return process.returncode, out, shown


def test_on_a_terminal_the_quote_is_confirmed_first(market: Market) -> None:
    """The quote asks before it submits; no submits nothing, yes (or --yes) submits, and stdout is the job id."""
    submit = ("client", "submit", "--model", "gpt2", "--input", "data.txt", "--use-marketplace")
    code, out, shown = on_terminal(*submit, typed=b"n\n")
    assert code == 1, shown
    assert b"Submit at this price? [Y/n]" in shown and b"not submitted" in shown
    assert out == b"" and market.jobs() == []
    code, out, shown = on_terminal(*submit, typed=b"y\n")
    assert code == 0 and b"Submit at this price?" in shown, shown
    code, yes_out, shown = on_terminal(*submit, "--yes", typed=b"")
    assert code == 0 and b"Submit at this price?" not in shown and b"at 0.04 AITBC/h" in shown, shown
    assert sorted(job["job_id"] for job in market.jobs()) == sorted([out.decode().strip(), yes_out.decode().strip()])


async def test_the_sdk_lists_the_gpus_and_quotes_a_job(market: Market) -> None:
    async with AsyncClient() as api:
        listing = await api.marketplace_gpus(model="gpt2", region="US-West")
        assert sorted(offer.name for offer in listing.offers) == ["agent_456", "west-a100"]
        quote = await api.quote(model="gpt2", requirements={"gpu_type": "a100"}, priority="high")
        assert quote.best is not None and quote.best.gpu_type == "a100"
        assert quote.best.price_per_hour == Decimal("0.15")
        nothing = await api.quote(model="mistral")
        assert nothing.best is None and nothing.reason is not None and "model 'mistral' not served" in nothing.reason
    with Client() as blocking:
        assert [offer.name for offer in blocking.marketplace_gpus(gpu_type="rtx3090").offers] == ["east-3090"]
        assert blocking.quote(model="llama").best is not None
    assert market.jobs() == []
