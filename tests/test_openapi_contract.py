"""The OpenAPI schema says what the API enforces, and the 5xx the fuzzer found outside the hostile-input list
stay 4xx. Each case here is a reproduction kept from tests/test_openapi_fuzz.py."""

from __future__ import annotations

import re
import sys
import unicodedata
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aitbc.domain.errors import InvalidInput
from aitbc.domain.manifest import FORBIDDEN_CATEGORIES, check_package_path
from aitbc.domain.money import MAX_BALANCE, parse_amount
from aitbc.domain.plans import Role
from aitbc.protocol.miners import FORBIDDEN_PATH_CHARACTERS, RESULT_PATH_PATTERN, ManifestFile
from aitbc.wiring import Coordinator

Api = tuple[httpx.AsyncClient, Coordinator]


async def key(coordinator: Coordinator, account: str, role: Role) -> dict[str, str]:
    return {"X-Api-Key": (await coordinator.accounts.create_key(account, role)).secret}


async def test_a_row_id_past_64_bits_is_422_not_500(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    job = (await http.post("/v1/jobs", json={"type": "command", "input": "x"}, headers=client)).json()
    for path in ("/v1/billing/ledger", f"/v1/jobs/{job['job_id']}/logs"):
        huge = await http.get(path, params={"after": 2**64}, headers=client)
        assert huge.status_code == 422, (path, huge.text)
        assert "after" in huge.json()["message"]
        largest = await http.get(path, params={"after": 2**63 - 1}, headers=client)
        assert largest.status_code == 200, (path, largest.text)


@pytest.mark.parametrize("amount", ["99999999999999999999", "1E-7", "+5", " 5", "0.0000000001", "1e3", "NaN"])
async def test_a_grant_that_is_not_a_plain_amount_is_422(api: Api, amount: str) -> None:
    http, coordinator = api
    admin = await key(coordinator, "root", Role.ADMIN)
    await key(coordinator, "alice", Role.CLIENT)
    before = await coordinator.billing.balance_of(await coordinator.accounts.account_named("alice"))
    answer = await http.post("/v1/admin/credits", json={"account": "alice", "amount": amount}, headers=admin)
    assert answer.status_code == 422, answer.text
    after = await coordinator.billing.balance_of(await coordinator.accounts.account_named("alice"))
    assert after.available == before.available


async def test_grants_stop_at_the_balance_cap(api: Api) -> None:
    """SQLite sums past 2^63 storage units as floats: a balance that large would lose its cents."""
    http, coordinator = api
    admin = await key(coordinator, "root", Role.ADMIN)
    alice = await key(coordinator, "alice", Role.CLIENT)
    available = Decimal((await http.get("/v1/billing/balance", headers=alice)).json()["available"])
    up_to_cap = {"account": "alice", "amount": format(MAX_BALANCE - available, "f")}
    first = await http.post("/v1/admin/credits", json=up_to_cap, headers=admin)
    assert first.status_code == 200, first.text
    assert Decimal(first.json()["available"]) == MAX_BALANCE
    body: dict[str, Any] = {"account": "alice", "amount": "0.000000001"}
    second = await http.post("/v1/admin/credits", json=body, headers=admin)
    assert second.status_code == 422
    assert "may not exceed" in second.json()["message"]


async def test_a_public_key_that_is_not_32_bytes_of_base64_is_refused_by_the_schema(api: Api) -> None:
    http, coordinator = api
    miner = await key(coordinator, "m", Role.MINER)
    body = {"name": "m1", "runtimes": ["command"], "public_key": "0" * 40}
    answer = await http.post("/v1/miners/register", json=body, headers=miner)
    assert answer.status_code == 422
    assert "public_key" in answer.json()["message"]


async def test_the_schema_declares_raw_uploads_submit_rules_and_links(api: Api) -> None:
    http, _coordinator = api
    schema = (await http.get("/openapi.json")).json()
    paths = schema["paths"]
    raw = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    assert paths["/v1/files"]["post"]["requestBody"]["content"] == raw
    assert paths["/v1/miners/{miner_id}/jobs/{job_id}/files/{path}"]["put"]["requestBody"]["content"] == raw
    name = next(p for p in paths["/v1/files"]["post"]["parameters"] if p["name"] == "name")
    assert "pattern" in name["schema"]
    submit = schema["components"]["schemas"]["SubmitJobRequest"]
    assert [clause["required"] for clause in submit["anyOf"]] == [["type"], ["model"], ["template"], ["workflow"]]
    links = paths["/v1/jobs"]["post"]["responses"]["201"]["links"]
    targets = {link["operationId"] for link in links.values()}
    get_job = paths["/v1/jobs/{job_id}"]["get"]["operationId"]
    assert get_job in targets
    assert all(link["parameters"] == {"path.job_id": "$response.body#/job_id"} for link in links.values())
    claim_links = paths["/v1/miners/{miner_id}/claim"]["post"]["responses"]["200"]["links"]
    start = paths["/v1/miners/{miner_id}/jobs/{job_id}/start"]["post"]["operationId"]
    assert claim_links[start]["requestBody"] == {"lease_id": "$response.body#/jobs/0/lease_id"}


async def test_dates_and_statuses_follow_the_declared_patterns(api: Api) -> None:
    """`from`, `to` and `status` are checked by the route's own parsers, against the patterns the schema shows."""
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    schema = (await http.get("/openapi.json")).json()
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert "pattern" in parameters["from"] and "pattern" in parameters["to"]
    assert "pattern" in parameters["status"]["items"]
    for good in ({"from": "2026-01-31"}, {"to": "2026-01-31T10:00:00Z"}, {"status": "pending, finished"}):
        assert (await http.get("/v1/jobs", params=good, headers=client)).status_code == 200, good
    for bad in ({"from": "2026-01-31T10"}, {"to": "20260131"}, {"status": "sleeping"}):
        refused = await http.get("/v1/jobs", params=bad, headers=client)
        assert refused.status_code == 422, bad
        assert next(iter(bad.values())) in refused.json()["message"]


async def test_an_idempotency_key_over_200_characters_is_refused_as_declared(api: Api) -> None:
    http, coordinator = api
    client = await key(coordinator, "alice", Role.CLIENT)
    schema = (await http.get("/openapi.json")).json()
    header = next(p for p in schema["paths"]["/v1/jobs"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert header["schema"]["anyOf"][0]["maxLength"] == 200
    body = {"type": "command", "input": "x"}
    long = await http.post("/v1/jobs", json=body, headers={**client, "Idempotency-Key": "k" * 201})
    assert long.status_code == 422 and "Idempotency-Key" in long.json()["message"]
    assert (await http.get("/v1/jobs", headers=client)).json()["total"] == 0


@pytest.mark.parametrize("text", ["99999999999999999999.5", "1000000000", "-1000000000"])
def test_an_amount_past_the_balance_cap_is_a_value_error_not_a_decimal_crash(text: str) -> None:
    """The CLI parses grants with the same function; 20 digits used to raise decimal.InvalidOperation."""
    with pytest.raises(ValueError, match="too large"):
        parse_amount(text)


def test_the_forbidden_path_characters_are_those_of_the_unicode_database() -> None:
    found: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF or unicodedata.category(chr(code)) not in FORBIDDEN_CATEGORIES - {"Cs"}:
            continue
        if found and found[-1][1] == code - 1:
            found[-1] = (found[-1][0], code)
        else:
            found.append((code, code))
    assert tuple(found) == FORBIDDEN_PATH_CHARACTERS


PATH_TEXT = st.text(
    st.characters(exclude_categories=["Cs"]) | st.sampled_from("/.\\\u202e\u2028\x85\ufeffa"), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from(["artifacts/", "logs/", "", "result.txt", "output.json"]), rest=PATH_TEXT)
def test_the_declared_result_path_pattern_accepts_exactly_what_check_package_path_accepts(
    prefix: str, rest: str
) -> None:
    path = prefix + rest
    try:
        check_package_path(path)
        accepted = True
    except InvalidInput:
        accepted = False
    assert bool(re.fullmatch(RESULT_PATH_PATTERN, path)) == accepted, path
    try:
        ManifestFile(path=path, size=0, sha256="0" * 64)
        declared = True
    except ValidationError:
        declared = False
    assert declared == accepted, path


async def test_the_schema_declares_prefer_wait_and_the_name_and_tag_rules(api: Api) -> None:
    """`Prefer` on submit and status GET; the tag and name patterns on every filter and on the submit body; the
    statuses a cancel by filter takes."""
    http, _coordinator = api
    schema = (await http.get("/openapi.json")).json()
    paths, components = schema["paths"], schema["components"]["schemas"]
    for method, path in (("post", "/v1/jobs"), ("get", "/v1/jobs/{job_id}")):
        assert "Prefer" in [p["name"] for p in paths[path][method]["parameters"]], path
    for path in ("/v1/jobs", "/v1/jobs/export"):
        parameters = {p["name"]: p["schema"] for p in paths[path]["get"]["parameters"]}
        assert all("pattern" in parameters[name]["anyOf"][0] for name in ("tag", "name")), path
    submit = components["SubmitJobRequest"]["properties"]
    assert submit["tags"]["maxItems"] == 16 and "pattern" in submit["tags"]["items"]
    cancel = components["CancelJobsRequest"]["properties"]
    assert cancel["status"]["items"]["enum"] == ["pending", "assigned", "running"]
    assert {"from", "to", "tag", "name", "all", "limit"} <= set(cancel)
    assert paths["/v1/jobs/cancel"]["post"]["responses"]["200"]
