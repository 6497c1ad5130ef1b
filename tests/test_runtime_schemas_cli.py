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
from aitbc.domain.plans import Role
from aitbc.miner.runtimes.text_generation import TextGenerationRuntime
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.support.protocol_miner import HttpMiner
from tests.support.served import served_in_thread

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
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False)

    async def bootstrap() -> tuple[str, str]:
        async with coordinator_session(settings) as coordinator:
            _admin, user = await coordinator.accounts.bootstrap()
            miner = await coordinator.accounts.create_key("farm", Role.MINER)
        return user.secret, miner.secret

    client_key, miner_key = asyncio.run(bootstrap())
    with served_in_thread(settings) as url:
        monkeypatch.setenv("AITBC_URL", url)
        monkeypatch.setenv("AITBC_API_KEY", client_key)
        monkeypatch.setenv("AITBC_CONFIG", str(tmp_path / "profile.json"))
        monkeypatch.setenv("COLUMNS", "200")
        asyncio.run(_register(url, miner_key))
        yield client_key


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
