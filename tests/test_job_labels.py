"""Job names and tags through the real app on SQLite and PostgreSQL: stored with the job, shown in its status
object, filtered on in `GET /v1/jobs?tag=&name=` (keyset-paginated, each account's own), in exports and
retries; bad names and tags get a 422 that stores nothing; a submit without tags runs no extra statement; and
the tag and name filters read their own indexes (EXPLAIN on both backends). And migration 0015."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aitbc.domain.labels import MAX_TAGS
from aitbc.domain.plans import Plan, Role
from aitbc.protocol.jobs import SubmitJobRequest
from aitbc.services.jobs import _request_hash
from aitbc.storage.interfaces import JobFilter
from aitbc.storage.sql.database import migrate, sync_engine
from aitbc.storage.sql.job_pages import page_statement
from aitbc.storage.sql.prepared import Prepared
from aitbc.storage.sql.tables import metadata
from aitbc.wiring import Coordinator
from tests.results.test_schema import _migrate_to
from tests.test_authentication_cache import statements
from tests.test_templates import key
from tests.test_workflows import _triggers_on_jobs

Api = tuple[httpx.AsyncClient, Coordinator]


async def submit(http: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = await http.post("/v1/jobs", json={"type": "command", "input": "echo hi", **body}, headers=headers)
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


async def listed(http: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    answer = await http.get("/v1/jobs", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


async def every_page(http: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> tuple[list[str], set[int]]:
    """The ids of every page of a listing, in order, and the totals the pages said."""
    ids: list[str] = []
    totals: set[int] = set()
    cursor = None
    while True:
        page = await listed(http, headers, **params, **({"cursor": cursor} if cursor else {}))
        ids.extend(job["job_id"] for job in page["jobs"])
        totals.add(page["total"])
        if not page["has_more"]:
            return ids, totals
        cursor = page["next_cursor"]


async def test_a_job_keeps_its_name_and_tags_and_shows_them(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    made = await submit(http, alice, name="nightly: résumé embeddings", tags=["nightly", "team:ml", "nightly", "v1.2"])
    assert made["name"] == "nightly: résumé embeddings"
    assert made["tags"] == ["nightly", "team:ml", "v1.2"]  # each once, in the order given
    shown = (await http.get(f"/v1/jobs/{made['job_id']}", headers=alice)).json()
    assert (shown["name"], shown["tags"]) == (made["name"], made["tags"])
    plain = await submit(http, alice)
    assert (plain["name"], plain["tags"]) == (None, [])
    retried_from = (await http.post(f"/v1/jobs/{made['job_id']}/cancel", headers=alice)).json()["job_id"]
    retry = await http.post(f"/v1/jobs/{retried_from}/retry", headers=alice)
    assert retry.status_code == 201, retry.text
    assert (retry.json()["name"], retry.json()["tags"]) == (made["name"], made["tags"])
    batch = await http.post(
        "/v1/jobs/batch",
        json={"jobs": [{"type": "command", "tags": ["batch"], "name": "one"}, {"type": "command", "tags": ["batch"]}]},
        headers=alice,
    )
    assert batch.status_code == 201, batch.text
    assert [item["job"]["tags"] for item in batch.json()["jobs"]] == [["batch"], ["batch"]]
    assert (await listed(http, alice, tag="batch"))["total"] == 2


async def test_lists_filter_by_tag_and_name_page_by_page_and_only_the_callers_jobs(api: Api) -> None:
    http, coordinator = api
    alice, bob = await key(coordinator, "alice", plan=Plan.ENTERPRISE), await key(coordinator, "bob")
    made = []
    for i in range(23):
        if i % 5 == 0:  # runs of jobs made in the same instant: the keyset's tie-break on the id is exercised
            coordinator.clock.advance(1)  # type: ignore[attr-defined]
        made.append(await submit(http, alice, tags=["sweep", f"n{i}"], name="sweep job"))
    tagged = [job["job_id"] for job in made]
    newest_first = [job["job_id"] for job in sorted(made, key=lambda j: (j["created_at"], j["job_id"]), reverse=True)]
    others = [(await submit(http, alice, tags=["other"], name=f"job {i}"))["job_id"] for i in range(3)]
    theirs = (await submit(http, bob, tags=["sweep"], name="sweep job"))["job_id"]

    ids, totals = await every_page(http, alice, tag="sweep", limit=5)
    assert ids == newest_first and totals == {23}
    ids, totals = await every_page(http, alice, name="sweep job", limit=7)
    assert ids == newest_first and totals == {23}
    ids, totals = await every_page(http, alice, tag="sweep", name="sweep job", status="pending", limit=10)
    assert ids == newest_first and totals == {23}
    assert (await listed(http, alice, tag="n4"))["jobs"][0]["job_id"] == tagged[4]
    assert [j["job_id"] for j in (await listed(http, alice, name="job 1"))["jobs"]] == [others[1]]
    assert (await listed(http, alice, tag="sweep", status="completed")) == {
        "jobs": [],
        "total": 0,
        "has_more": False,
        "next_cursor": None,
    }
    assert (await listed(http, alice, tag="nobody-has-this"))["total"] == 0
    assert [j["job_id"] for j in (await listed(http, bob, tag="sweep"))["jobs"]] == [theirs]

    await http.post(f"/v1/jobs/{tagged[0]}/cancel", headers=alice)
    assert (await listed(http, alice, tag="sweep", status="pending"))["total"] == 22
    assert (await listed(http, alice, tag="sweep", status="canceled"))["total"] == 1
    now = coordinator.clock.now()
    window = {"from": (now.replace(year=now.year - 1)).isoformat(), "to": now.replace(year=now.year + 1).isoformat()}
    assert (await listed(http, alice, tag="sweep", **window))["total"] == 23


async def test_exports_carry_names_and_tags_and_filter_on_them(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    wanted = await submit(http, alice, name='a "quoted", name', tags=["export", "b:2"])
    await submit(http, alice, tags=["elsewhere"])
    answer = await http.get("/v1/jobs/export", params={"format": "csv", "tag": "export"}, headers=alice)
    assert answer.status_code == 200, answer.text
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(row["job_id"], row["name"], row["tags"]) for row in rows] == [
        (wanted["job_id"], 'a "quoted", name', "export b:2")
    ]
    answer = await http.get("/v1/jobs/export", params={"format": "json", "name": 'a "quoted", name'}, headers=alice)
    (exported,) = json.loads(answer.text)
    assert (exported["job_id"], exported["tags"]) == (wanted["job_id"], ["export", "b:2"])
    everything = await http.get("/v1/jobs/export", params={"format": "json"}, headers=alice)
    assert len(json.loads(everything.text)) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "x" * 201),
        ("name", "two\nlines"),
        ("name", ""),
        ("name", 42),
        ("tags", ["has space"]),
        ("tags", ["x" * 65]),
        ("tags", [""]),
        ("tags", ["semi;colon"]),
        ("tags", ["ünï"]),
        ("tags", [f"t{i}" for i in range(MAX_TAGS + 1)]),
        ("tags", "nightly"),
        ("tags", [1]),
        ("tags", [["nested"]]),
    ],
)
async def test_bad_names_and_tags_are_422_and_store_nothing(api: Api, field: str, value: Any) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    answer = await http.post("/v1/jobs", json={"type": "command", field: value}, headers=alice)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["message"]
    batch = await http.post("/v1/jobs/batch", json={"jobs": [{"type": "command", field: value}]}, headers=alice)
    assert batch.status_code == 422, batch.text
    assert (await listed(http, alice))["total"] == 0


@pytest.mark.parametrize("params", [{"tag": "has space"}, {"tag": "x" * 65}, {"name": "x" * 201}, {"name": "a\tb"}])
async def test_bad_tag_and_name_filters_are_422(api: Api, params: dict[str, str]) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    for path in ("/v1/jobs", "/v1/jobs/export"):
        answer = await http.get(path, params=params, headers=alice)
        assert answer.status_code == 422, (path, answer.text)
        assert next(iter(params)) in answer.json()["message"]


async def test_an_idempotency_key_reused_with_other_tags_is_a_conflict(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    first = await http.post(
        "/v1/jobs", json={"type": "command", "tags": ["a"]}, headers={**alice, "Idempotency-Key": "k1"}
    )
    replay = await http.post(
        "/v1/jobs", json={"type": "command", "tags": ["a"]}, headers={**alice, "Idempotency-Key": "k1"}
    )
    other = await http.post(
        "/v1/jobs", json={"type": "command", "tags": ["b"]}, headers={**alice, "Idempotency-Key": "k1"}
    )
    assert (first.status_code, replay.status_code, other.status_code) == (201, 200, 409)
    assert replay.json()["job_id"] == first.json()["job_id"]
    assert (await listed(http, alice, tag="a"))["total"] == 1 and (await listed(http, alice, tag="b"))["total"] == 0


def test_a_request_without_a_name_or_tags_hashes_as_it_did_before_them() -> None:
    request = SubmitJobRequest.model_validate({"type": "command", "input": "echo hi", "priority": "high"})
    assert _request_hash(request) == "58a42d374047624fc12caaa44ebbf6b1d0ce9f800f720651b37404aa233ab933"
    assert _request_hash(request.model_copy(update={"tags": ["a"]})) != _request_hash(request)
    assert _request_hash(request.model_copy(update={"name": "n"})) != _request_hash(request)


async def test_a_submit_without_tags_runs_no_extra_statement_and_a_tagged_one_just_one(api: Api) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice", plan=Plan.ENTERPRISE)
    coordinator.accounts.principals.check_seconds = 3600
    await submit(http, alice)  # the principal cached, the statements prepared
    counts = []
    for body in ({}, {"name": "named"}, {"tags": ["a", "b", "c"]}):
        await submit(http, alice, **body)
        with statements(coordinator) as seen:
            await submit(http, alice, **body)
        counts.append(len(seen))
    plain, named, tagged = counts
    assert named == plain and tagged == plain + 1, counts
    job_id = (await submit(http, alice, tags=["a"], name="n"))["job_id"]
    with statements(coordinator) as seen:
        assert (await http.get(f"/v1/jobs/{job_id}", headers=alice)).json()["tags"] == ["a"]
    assert len(seen) == 1, seen
    with statements(coordinator) as seen:
        assert (await listed(http, alice, tag="a"))["total"] == 3
    assert len(seen) <= 2, seen


def _plan(connection: sa.Connection, statement: Any) -> str:
    """The query plan of `statement`, as text; on PostgreSQL with sequential scans discouraged (a test table of
    a few rows would be scanned whole anyway: the question is whether the index serves the query)."""
    prepared = Prepared(statement, connection.dialect)
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {prepared.sql}", tuple(prepared.values({}))).all()
        return "\n".join(str(row[-1]) for row in rows)
    connection.exec_driver_sql("SET enable_seqscan = off")
    rows = connection.exec_driver_sql(f"EXPLAIN {prepared.sql}", prepared.named_values({})).all()
    return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize("cursor", [False, True])
async def test_the_tag_and_name_filters_read_their_own_indexes_in_order(api: Api, cursor: bool) -> None:
    http, coordinator = api
    alice = await key(coordinator, "alice")
    for _ in range(3):
        await submit(http, alice, tags=["t"], name="n")
    account_id = (await coordinator.accounts.authenticate(alice["X-Api-Key"])).account.id
    after = (await listed(http, alice, limit=1))["next_cursor"] if cursor else None
    engine = sync_engine(coordinator.settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            by_tag, _ = page_statement(JobFilter(account_id=account_id, tag="t"), 50, after, False)
            by_name, _ = page_statement(JobFilter(account_id=account_id, name="n"), 50, after, False)
            tag_plan, name_plan = _plan(connection, by_tag), _plan(connection, by_name)
    finally:
        engine.dispose()
    if engine.dialect.name == "sqlite":
        assert "SEARCH job_tags USING" in tag_plan and "sqlite_autoindex_job_tags_1" in tag_plan, tag_plan
        assert "SEARCH jobs USING INDEX ix_jobs_account_name_created" in name_plan, name_plan
        assert "TEMP B-TREE" not in tag_plan + name_plan  # read in order: no sort
    else:
        assert "pk_job_tags" in tag_plan, tag_plan
        assert "ix_jobs_account_name_created" in name_plan, name_plan
        assert "Sort" not in tag_plan + name_plan, tag_plan + name_plan


def test_migration_0015_matches_the_tables_and_goes_down_and_up(database_url: str) -> None:
    """The columns on `jobs` come and go in place (the triggers of 0010 and 0011 stay); job_tags and the name
    index come and go with them."""
    migrate(database_url)
    engine = sync_engine(database_url)
    ours = ("job_tags", "'name'", "'tags'", "ix_jobs_account_name_created")
    try:
        with engine.connect() as connection:
            triggers = _triggers_on_jobs(connection)
        _migrate_to(engine, "0014", down=True)
        with engine.connect() as connection:
            tables = set(connection.dialect.get_table_names(connection))
            columns = {column["name"] for column in connection.dialect.get_columns(connection, "jobs")}
            indexes = {index["name"] for index in connection.dialect.get_indexes(connection, "jobs")}
            assert _triggers_on_jobs(connection) == triggers
        assert "job_tags" not in tables and not {"name", "tags"} & columns
        assert "ix_jobs_account_name_created" not in indexes
        _migrate_to(engine, "head")
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = [d for d in compare_metadata(context, metadata) if any(name in repr(d) for name in ours)]
            indexes = {index["name"] for index in connection.dialect.get_indexes(connection, "jobs")}
            assert _triggers_on_jobs(connection) == triggers
        assert differences == [] and "ix_jobs_account_name_created" in indexes
    finally:
        engine.dispose()


async def test_a_miner_key_may_not_list_or_filter(api: Api) -> None:
    http, coordinator = api
    miner = await key(coordinator, "m", Role.MINER)
    assert (await http.get("/v1/jobs", params={"tag": "a"}, headers=miner)).status_code == 403
