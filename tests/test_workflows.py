"""Workflows through the real app on SQLite and PostgreSQL: admins define named, immutable versions (type, model,
params, defaults, and the parameter keys users may set); any client lists them and submits with
`"workflow": "NAME"` (the newest version) or `"NAME@VERSION"`; the job records which one. And migration 0012."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aitbc.domain.plans import Role
from aitbc.storage.sql.database import migrate, sync_engine
from aitbc.storage.sql.tables import metadata
from aitbc.wiring import Coordinator
from tests.results.test_schema import _migrate_to
from tests.test_templates import jobs_of, key

Api = tuple[httpx.AsyncClient, Coordinator]
AI_INFERENCE = {
    "name": "ai_inference",
    "type": "text-generation",
    "model": "gpt2",
    "params": {"temperature": 0.5, "max_tokens": 200},
    "allowed_keys": ["temperature", "max_tokens", "top_p"],
    "description": "Text generation with gpt2",
}


async def define(http: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = await http.post("/v1/admin/workflows", json=body, headers=admin)
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


async def catalogue(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = await http.get("/v1/workflows", headers=headers)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def test_a_workflow_makes_jobs_with_its_settings_and_the_users_config(api: Api) -> None:
    http, coordinator = api
    admin, alice = await key(coordinator, "root", Role.ADMIN), await key(coordinator, "alice")
    made = await define(http, admin, **AI_INFERENCE)
    assert (made["workflow"], made["version"], made["latest"]) == ("ai_inference@1", 1, True)

    # The guide: `--workflow ai_inference --input '{"prompt": "Hello world"}'`, then with a workflow config.
    job = (
        await http.post(
            "/v1/jobs", json={"workflow": "ai_inference", "input": {"prompt": "Hello world"}}, headers=alice
        )
    ).json()
    assert (job["type"], job["model"], job["params"], job["workflow"]) == (
        "text-generation",
        "gpt2",
        {"temperature": 0.5, "max_tokens": 200},
        "ai_inference@1",
    )
    body = {"workflow": "ai_inference", "input": "data", "params": {"temperature": 0.8, "max_tokens": 1000}}
    job = (await http.post("/v1/jobs", json=body, headers=alice)).json()
    assert job["params"] == {"temperature": 0.8, "max_tokens": 1000}
    status = (await http.get(f"/v1/jobs/{job['job_id']}", headers=alice)).json()
    assert status["workflow"] == "ai_inference@1" and status["template"] is None
    # An explicit field wins over the workflow's.
    job = (await http.post("/v1/jobs", json={"workflow": "ai_inference", "model": "llama"}, headers=alice)).json()
    assert job["model"] == "llama" and job["type"] == "text-generation"


async def test_versions_are_immutable_and_the_newest_is_the_default(api: Api) -> None:
    http, coordinator = api
    admin, alice = await key(coordinator, "root", Role.ADMIN), await key(coordinator, "alice")
    await define(http, admin, **AI_INFERENCE)
    second = await define(http, admin, **{**AI_INFERENCE, "model": "llama", "priority": "high", "timeout_seconds": 90})
    assert second["version"] == 2
    same = await http.post("/v1/admin/workflows", json={**AI_INFERENCE, "version": 1, "model": "other"}, headers=admin)
    assert same.status_code == 409 and "ai_inference@1 already exists" in same.json()["message"]
    pinned = await define(http, admin, **{**AI_INFERENCE, "version": 10, "model": "ten"})
    assert pinned["version"] == 10
    older = await define(http, admin, **{**AI_INFERENCE, "version": 5, "model": "five"})
    assert older["latest"] is False

    listed = await catalogue(http, alice)
    assert [(each["workflow"], each["latest"]) for each in listed] == [
        ("ai_inference@10", True),
        ("ai_inference@5", False),
        ("ai_inference@2", False),
        ("ai_inference@1", False),
    ]
    assert listed[-1]["model"] == "gpt2"  # version 1 is as it was made
    newest = (await http.post("/v1/jobs", json={"workflow": "ai_inference"}, headers=alice)).json()
    assert (newest["model"], newest["workflow"]) == ("ten", "ai_inference@10")
    pinned_job = (await http.post("/v1/jobs", json={"workflow": "ai_inference@2"}, headers=alice)).json()
    assert (pinned_job["model"], pinned_job["priority"], pinned_job["timeout_seconds"]) == ("llama", "high", 90)
    assert pinned_job["workflow"] == "ai_inference@2"
    assert (await define(http, admin, **AI_INFERENCE))["version"] == 11


async def test_unknown_parameter_keys_are_422_naming_them_and_nothing_is_stored(api: Api) -> None:
    http, coordinator = api
    admin, alice = await key(coordinator, "root", Role.ADMIN), await key(coordinator, "alice")
    await define(http, admin, **AI_INFERENCE)
    before = (await http.get("/v1/billing/balance", headers=alice)).json()
    body = {"workflow": "ai_inference", "params": {"temperature": 0.8, "seed": 1, "evil": True}}
    refused = await http.post("/v1/jobs", json=body, headers=alice)
    assert refused.status_code == 422, refused.text
    message = refused.json()["message"]
    assert "evil, seed" in message and "temperature, max_tokens, top_p" in message and "ai_inference@1" in message
    # The workflow's own preset keys need not be allowed; a workflow with no allowed keys takes none.
    await define(http, admin, name="locked", type="command", params={"fixed": 1}, allowed_keys=[])
    assert (await http.post("/v1/jobs", json={"workflow": "locked"}, headers=alice)).status_code == 201
    refused = await http.post("/v1/jobs", json={"workflow": "locked", "params": {"x": 1}}, headers=alice)
    assert refused.status_code == 422 and "takes: none" in refused.json()["message"]
    # Without allowed keys (null), any parameter goes.
    await define(http, admin, name="open", type="command")
    assert (
        await http.post("/v1/jobs", json={"workflow": "open", "params": {"anything": 1}}, headers=alice)
    ).status_code == 201
    assert len(await jobs_of(http, alice)) == 2
    after = (await http.get("/v1/billing/balance", headers=alice)).json()
    assert after["held"] != before["held"]  # the two jobs hold; the refused ones did not


async def test_an_unknown_workflow_or_version_is_404_saying_what_exists(api: Api) -> None:
    http, coordinator = api
    admin, alice = await key(coordinator, "root", Role.ADMIN), await key(coordinator, "alice")
    none_yet = await http.post("/v1/jobs", json={"workflow": "ai_inference"}, headers=alice)
    assert none_yet.status_code == 404 and "no workflow is defined" in none_yet.json()["message"]
    await define(http, admin, **AI_INFERENCE)
    await define(http, admin, **AI_INFERENCE)
    await define(http, admin, name="summarize", type="text-generation")
    unknown = await http.post("/v1/jobs", json={"workflow": "custom_workflow"}, headers=alice)
    assert unknown.status_code == 404, unknown.text
    message = unknown.json()["message"]
    assert "'custom_workflow' not found" in message
    assert "ai_inference (versions 2, 1)" in message and "summarize (version 1)" in message
    no_version = await http.post("/v1/jobs", json={"workflow": "ai_inference@7"}, headers=alice)
    assert no_version.status_code == 404 and "no version 7; its versions: 2, 1" in no_version.json()["message"]
    for bad in ("ai inference", "ai_inference@", "ai_inference@0", "ai_inference@x", "a@1@2"):
        refused = await http.post("/v1/jobs", json={"workflow": bad}, headers=alice)
        assert refused.status_code == 422 and "workflow" in refused.json()["message"], bad
    assert await jobs_of(http, alice) == []


async def test_only_admins_define_workflows_and_bad_ones_are_refused(api: Api) -> None:
    http, coordinator = api
    admin, alice = await key(coordinator, "root", Role.ADMIN), await key(coordinator, "alice")
    forbidden = await http.post("/v1/admin/workflows", json=AI_INFERENCE, headers=alice)
    assert forbidden.status_code == 403, forbidden.text
    for bad in (
        {**AI_INFERENCE, "name": "bad name"},
        {**AI_INFERENCE, "name": "x" * 65},
        {name: value for name, value in AI_INFERENCE.items() if name != "type"},
        {**AI_INFERENCE, "version": 0},
        {**AI_INFERENCE, "allowed_keys": ["ok", "not ok"]},
        {**AI_INFERENCE, "allowed_keys": [f"k{n}" for n in range(201)]},
        {**AI_INFERENCE, "description": "d" * 1001},
        {**AI_INFERENCE, "surprise": 1},
    ):
        refused = await http.post("/v1/admin/workflows", json=bad, headers=admin)
        assert refused.status_code == 422, (bad, refused.text)
    huge = await http.post(
        "/v1/admin/workflows", json={**AI_INFERENCE, "params": {"blob": "x" * 70_000}}, headers=admin
    )
    assert huge.status_code == 413
    assert await catalogue(http, alice) == []
    assert (await http.get("/v1/workflows")).status_code == 401


async def test_a_template_may_name_a_workflow(api: Api) -> None:
    http, coordinator = api
    admin, alice = await key(coordinator, "root", Role.ADMIN), await key(coordinator, "alice")
    missing = await http.post("/v1/templates", json={"name": "mine", "workflow": "ai_inference"}, headers=alice)
    assert missing.status_code == 404 and "ai_inference" in missing.json()["message"]
    await define(http, admin, **AI_INFERENCE)
    refused = await http.post(
        "/v1/templates", json={"name": "mine", "workflow": "ai_inference", "params": {"seed": 1}}, headers=alice
    )
    assert refused.status_code == 422 and "seed" in refused.json()["message"]
    template = {"name": "mine", "workflow": "ai_inference", "params": {"temperature": 0.1}, "priority": "low"}
    assert (await http.post("/v1/templates", json=template, headers=alice)).status_code == 201
    await define(http, admin, **{**AI_INFERENCE, "model": "llama"})
    body = {"template": "mine", "input": "x", "params": {"top_p": 0.9}}
    job = (await http.post("/v1/jobs", json=body, headers=alice)).json()
    assert (job["model"], job["priority"], job["template"], job["workflow"]) == (
        "llama",
        "low",
        "mine",
        "ai_inference@2",
    )
    assert job["params"] == {"temperature": 0.1, "max_tokens": 200, "top_p": 0.9}
    # The request's own workflow wins over the template's, and its keys are checked against that workflow.
    job = (await http.post("/v1/jobs", json={"template": "mine", "workflow": "ai_inference@1"}, headers=alice)).json()
    assert (job["model"], job["workflow"]) == ("gpt2", "ai_inference@1")
    await define(http, admin, name="strict", type="command", allowed_keys=["x"])
    refused = await http.post("/v1/jobs", json={"template": "mine", "workflow": "strict"}, headers=alice)
    assert refused.status_code == 422 and "temperature" in refused.json()["message"]


def _triggers_on_jobs(connection: sa.Connection) -> int:
    if connection.dialect.name == "sqlite":
        query = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'jobs'"
    else:
        query = "SELECT count(DISTINCT trigger_name) FROM information_schema.triggers WHERE event_object_table = 'jobs'"
    return int(connection.execute(sa.text(query)).scalar_one())


def test_migration_0012_matches_the_tables_and_goes_down_and_up(database_url: str) -> None:
    """The columns on `jobs` come and go in place: the triggers that keep job_counts and job_stats_daily stay."""
    migrate(database_url)
    engine = sync_engine(database_url)
    ours = ("job_templates", "workflows", "'template'", "'workflow'")
    try:
        with engine.connect() as connection:
            triggers = _triggers_on_jobs(connection)
        assert triggers > 0
        _migrate_to(engine, "0011", down=True)
        with engine.connect() as connection:
            tables = set(connection.dialect.get_table_names(connection))
            columns = {column["name"] for column in connection.dialect.get_columns(connection, "jobs")}
            assert _triggers_on_jobs(connection) == triggers
        assert not {"job_templates", "workflows"} & tables and not {"template", "workflow"} & columns
        _migrate_to(engine, "head")
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = [d for d in compare_metadata(context, metadata) if any(name in repr(d) for name in ours)]
            tables = set(connection.dialect.get_table_names(connection))
            assert _triggers_on_jobs(connection) == triggers
        assert differences == [] and {"job_templates", "workflows"} <= tables
    finally:
        engine.dispose()


@pytest.mark.parametrize("path", ["/v1/workflows", "/v1/templates"])
async def test_admins_can_read_the_catalogue_and_their_own_templates(api: Api, path: str) -> None:
    http, coordinator = api
    admin = await key(coordinator, "root", Role.ADMIN)
    assert (await http.get(path, headers=admin)).status_code == 200
