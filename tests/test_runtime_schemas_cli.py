"""`aitbc marketplace runtimes [NAME] [--json]` and the SDK's `marketplace_runtimes()`: what each runtime on offer
takes, as the miners declared it — against a real coordinator on a socket, miners speaking the real protocol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aitbc import Client
from aitbc.cli.main import app
from aitbc.miner.runtimes.text_generation import TextGenerationRuntime
from tests.support.protocol_miner import HttpMiner
from tests.support.served import served_for_cli

GENERATION = {
    "text-generation": {"input": TextGenerationRuntime.input_schema, "parameters": TextGenerationRuntime.params_schema}
}


async def _register(url: str, miner_key: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        runtimes = ["text-generation", "command"]
        await HttpMiner(
            http, miner_key, name="strict", runtimes=runtimes, models=["gpt2"], schemas=GENERATION
        ).register()
        await HttpMiner(http, miner_key, name="legacy", runtimes=["command"]).register()


@pytest.fixture
def market(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with served_for_cli(tmp_path, monkeypatch) as served:
        asyncio.run(_register(served.url, served.miner_key))
        yield served.client_key


def aitbc(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_the_runtimes_table_says_what_each_runtime_takes(market: str) -> None:
    code, out, err = aitbc("marketplace", "runtimes")
    assert code == 0, err
    assert "2 runtimes on offer" in out
    generation = next(line for line in out.splitlines() if "text-generation" in line)
    for shown in ("gpt2", "the prompt", "max_tokens, seed, temperature, top_p"):
        assert shown in generation
    command = next(line for line in out.splitlines() if "│ command" in line)
    assert "anything" in command  # the legacy miner declared nothing


def test_one_runtime_prints_its_schemas_in_full_and_an_unknown_one_is_an_error(market: str) -> None:
    code, out, _ = aitbc("marketplace", "runtimes", "text-generation")
    assert code == 0
    shown = json.loads(out)
    assert shown["schemas"] == [{**GENERATION["text-generation"], "miners": 1}] and shown["undeclared"] == 0
    code, _, err = aitbc("marketplace", "runtimes", "reencode")
    assert code == 1 and "no live miner offers the runtime 'reencode' (on offer: command, text-generation)" in err
    code, out, _ = aitbc("marketplace", "runtimes", "--json")
    assert [runtime["name"] for runtime in json.loads(out)["runtimes"]] == ["command", "text-generation"]


def test_the_sdk_reads_the_runtimes(market: str) -> None:
    with Client() as client:
        found = client.marketplace_runtimes()
    by_name = {runtime.name: runtime for runtime in found.runtimes}
    assert by_name["command"].miners == 2 and by_name["command"].undeclared == 2
    assert by_name["text-generation"].schemas[0].parameters == TextGenerationRuntime.params_schema
