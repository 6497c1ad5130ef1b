"""Miners register the JSON Schemas of their runtimes' input and params, and a job only goes to a miner whose
schemas it is valid for (or one that declared none) — against the real app on SQLite and PostgreSQL, miners
speaking the real HTTP protocol, and a real miner agent registering its runtimes' schemas."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.clock import ManualClock
from aitbc.domain.manifest import public_key_text
from aitbc.domain.plans import Role
from aitbc.domain.runtime_schemas import MAX_SCHEMA_BYTES, RuntimeSchemas
from aitbc.miner.agent import Agent
from aitbc.miner.config import MinerConfig
from aitbc.miner.coordinator_client import CoordinatorClient
from aitbc.miner.runtimes.interface import JobContext, RuntimeResult
from aitbc.miner.runtimes.text_generation import TextGenerationRuntime
from aitbc.wiring import Coordinator
from tests.miner.inprocess import BASE_URL, InProcess, in_process
from tests.support.protocol_miner import HttpMiner

Api = tuple[httpx.AsyncClient, Coordinator]
GENERATION = {
    "text-generation": {"input": TextGenerationRuntime.input_schema, "parameters": TextGenerationRuntime.params_schema}
}


async def key(coordinator: Coordinator, account: str, role: Role) -> dict[str, str]:
    return {"X-Api-Key": (await coordinator.accounts.create_key(account, role)).secret}


async def miner(http: httpx.AsyncClient, coordinator: Coordinator, name: str, **options: Any) -> HttpMiner:
    secret = (await coordinator.accounts.create_key("farm", Role.MINER)).secret
    made = HttpMiner(http, secret, name=name, runtimes=["text-generation"], **options)
    await made.register()
    return made


async def generate(http: httpx.AsyncClient, client: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = await http.post("/v1/jobs", json={"type": "text-generation", **body}, headers=client)
    assert answer.status_code == 201, answer.text
    job: dict[str, Any] = answer.json()
    return job


async def register_body(coordinator: Coordinator, **fields: Any) -> tuple[dict[str, str], dict[str, Any]]:
    public_key = public_key_text(Ed25519PrivateKey.generate())
    body = {"name": "rig", "runtimes": ["text-generation", "command"], "public_key": public_key, **fields}
    return await key(coordinator, "farm", Role.MINER), body


def deep(schema: dict[str, Any], levels: int) -> dict[str, Any]:
    for _ in range(levels):
        schema = {"items": schema}
    return schema


@pytest.mark.parametrize(
    ("schemas", "words"),
    [
        ({"text-generation": {"input": {"type": "strin"}}}, "schemas['text-generation'].input is not a usable"),
        ({"command": {"parameters": {"properties": {"x": {"minimum": "a"}}}}}, "'a' is not of type 'number'"),
        ({"embedding": {"input": {"type": "string"}}}, "'embedding', which is not one of this miner's runtimes"),
        ({"command": {"input": {"$ref": "http://169.254.169.254/latest"}}}, "points outside the schema"),
        (
            {"command": {"input": {"enum": ["x" * 1000] * (MAX_SCHEMA_BYTES // 1000 + 1)}}},
            f"over the limit of {MAX_SCHEMA_BYTES}",
        ),
        ({"command": {"input": "string"}}, "schemas.command.input"),
        ({"command": {"parameters": deep({"type": "object"}, 400)}}, "nested deeper than"),
    ],
)
async def test_registering_an_unusable_schema_is_refused_and_stores_nothing(
    api: Api, schemas: dict[str, Any], words: str
) -> None:
    http, coordinator = api
    headers, body = await register_body(coordinator, schemas=schemas)
    answer = await http.post("/v1/miners/register", json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["message"]
    assert await coordinator.live_miners.miners_named("rig") == []
    good = {"command": {"input": {"type": "string"}, "parameters": None}}
    answer = await http.post("/v1/miners/register", json={**body, "schemas": good}, headers=headers)
    assert answer.status_code == 200, answer.text
    (stored,) = await coordinator.live_miners.miners_named("rig")
    assert stored.capabilities.schemas_by_runtime() == {"command": RuntimeSchemas.of({"type": "string"})}


async def test_a_miner_with_schemas_passes_over_a_job_they_refuse_and_one_without_takes_it(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    strict = await miner(http, coordinator, "strict", schemas=GENERATION)
    reasons = (
        "no connected miner can run it (input for 'text-generation': must be a string (got an object); "
        "params for 'text-generation': unknown key 'temprature')"
    )
    body = {"type": "text-generation", "input": {"prompt": "hi"}, "params": {"temprature": 0.3}}
    refused = await http.post("/v1/jobs", json=body, headers=client)  # no live miner can take it: said at submit
    assert refused.status_code == 422 and refused.json()["message"].startswith(reasons)
    bad = await generate(http, client, **body, queue_timeout_seconds=600)  # asked to wait for a miner that can
    assert bad["waiting_for"] == reasons
    assert await strict.claim(max_jobs=4) == []
    # Valid for the schemas, with the key the coordinator adds itself (`output_config`): the strict miner takes it.
    good = await generate(
        http, client, input="Once upon a time", params={"temperature": 0}, output_config={"format": "txt"}
    )
    (taken,) = await strict.claim(max_jobs=4)
    assert taken["job_id"] == good["job_id"] and taken["params"]["output_config"] == {"format": "txt"}
    assert await strict.claim(max_jobs=4) == []
    legacy = await miner(http, coordinator, "legacy")  # no schemas: every input is valid for it, as before
    (taken,) = await legacy.claim(max_jobs=4)
    assert taken["job_id"] == bad["job_id"]


async def test_an_uploaded_input_is_not_checked_against_the_input_schema(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    strict = await miner(http, coordinator, "strict", schemas=GENERATION)
    uploaded = await http.post("/v1/files", params={"name": "prompt.txt"}, content=b"Once upon a time", headers=client)
    assert uploaded.status_code == 201, uploaded.text
    job = await generate(http, client, input_file_id=uploaded.json()["file_id"])
    (taken,) = await strict.claim()
    assert taken["job_id"] == job["job_id"]


async def test_a_job_pinned_to_a_miner_whose_schemas_refuse_it_is_refused_at_submit(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "strict", schemas=GENERATION)
    answer = await http.post(
        "/v1/jobs",
        json={"type": "text-generation", "input": "hi", "params": {"top_p": 2}, "requirements": {"miner_id": "strict"}},
        headers=client,
    )
    assert answer.status_code == 422, answer.text
    assert "params for 'text-generation' at top_p: must be at most 1 (got 2)" in answer.json()["message"]


async def test_the_marketplace_lists_each_runtime_with_the_schemas_live_miners_declared(
    api: Api, clock: ManualClock
) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    await miner(http, coordinator, "one", schemas=GENERATION, models=["gpt2"])
    await miner(http, coordinator, "two", schemas=GENERATION, models=["llama"])
    await miner(http, coordinator, "legacy")
    answer = await http.get("/v1/marketplace/runtimes", headers=client)
    assert answer.status_code == 200, answer.text
    (runtime,) = answer.json()["runtimes"]
    assert (runtime["name"], runtime["miners"], runtime["models"], runtime["undeclared"]) == (
        "text-generation",
        3,
        ["gpt2", "llama"],
        1,
    )
    assert runtime["schemas"] == [{**GENERATION["text-generation"], "miners": 2}]
    clock.advance(coordinator.settings.miner_active_seconds + 1)  # gone quiet: no longer on offer
    assert (await http.get("/v1/marketplace/runtimes", headers=client)).json() == {"runtimes": []}


# -- a real miner agent ------------------------------------------------------------------------------------


class EchoRuntime:
    """A runtime that declares its schemas, as the built-in ones do: text in, `{"shout": bool}` params."""

    name = "echo"
    input_schema: ClassVar[dict[str, Any]] = {"type": "string", "minLength": 1}
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"shout": {"type": "boolean"}},
        "additionalProperties": False,
    }

    def models(self) -> list[str]:
        return []

    async def run(self, context: JobContext) -> RuntimeResult:
        text = context.input_text()
        context.package.result_file.write_text(text.upper() if context.assignment.params.get("shout") else text)
        return RuntimeResult()

    async def close(self) -> None:
        return None


@pytest.fixture
async def stack(tmp_path: Path) -> Any:
    async with in_process(tmp_path) as made:
        yield made


async def test_a_real_agent_registers_its_runtimes_schemas_and_runs_only_the_jobs_they_accept(stack: InProcess) -> None:
    valid = await stack.submit(type="echo", input="hello", params={"shout": True})
    invalid = await stack.submit(type="echo", input="hello", params={"shuot": True})
    agent = await stack.drain({"echo": EchoRuntime()})
    stored = await stack.coordinator.live_miners.get_miner(agent.miner_id)
    assert stored is not None
    assert stored.capabilities.schemas_by_runtime() == {
        "echo": RuntimeSchemas.of(EchoRuntime.input_schema, EchoRuntime.params_schema)
    }
    assert (await stack.job(valid))["status"] == "completed"
    _, files = await stack.package(valid)
    assert files["result.txt"] == b"HELLO"
    left = await stack.job(invalid)
    assert left["status"] == "pending"
    assert "params for 'echo': unknown key 'shuot'" in left["waiting_for"]


class BeforeSchemas(httpx.AsyncBaseTransport):
    """A coordinator from before runtime schemas: its register refuses the field it does not know."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/miners/register" and b'"schemas"' in request.content:
            self.refused += 1
            message = "invalid request: schemas: Extra inputs are not permitted"
            return httpx.Response(422, json={"error": "invalid_input", "message": message, "detail": message})
        return await self.inner.handle_async_request(request)


async def test_an_agent_registers_without_schemas_with_a_coordinator_that_refuses_them(stack: InProcess) -> None:
    typo = await stack.submit(type="echo", input="hello", params={"shuot": True})
    old = BeforeSchemas(stack.transport)
    config = MinerConfig(
        url=BASE_URL,
        api_key=stack.miner_key,
        name="older",
        drain=True,
        claim_wait_seconds=2,
        work_dir=stack.root / "older",
    )
    agent = Agent(config, {"echo": EchoRuntime()}, CoordinatorClient(BASE_URL, stack.miner_key, transport=old))
    await asyncio.wait_for(agent.run(), timeout=120)
    assert old.refused == 1
    stored = await stack.coordinator.live_miners.get_miner(agent.miner_id)
    assert stored is not None and stored.capabilities.schemas == ()
    assert (await stack.job(typo))["status"] == "completed"  # registered without schemas: it takes anything
