"""OpenAPI links: which field of an answer feeds which parameter of the next call. They let a reader of the
schema (and a stateful fuzzer) follow a job from its submit to its status, results, receipt and shares, a miner
from register to claim to complete (one job, or a batch), an API key from its creation to its revocation, and a
template or workflow from its creation to a submit that names it, with live ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

Operation = tuple[str, str]  # (method, path) as the schema lists it


@dataclass(frozen=True)
class Link:
    source: Operation
    status: str
    target: Operation
    parameters: dict[str, str]
    request_body: dict[str, Any] | None = field(default=None)


JOB_ID = {"path.job_id": "$response.body#/job_id"}
# Where a client's job id leads: everything the client can do with that job.
JOB_OPERATIONS: list[Operation] = [
    ("GET", "/v1/jobs/{job_id}"),
    ("POST", "/v1/jobs/{job_id}/cancel"),
    ("DELETE", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/timeline"),
    ("POST", "/v1/jobs/{job_id}/retry"),
    ("GET", "/v1/jobs/{job_id}/logs"),
    ("GET", "/v1/jobs/{job_id}/results"),
    ("DELETE", "/v1/jobs/{job_id}/results"),
    ("GET", "/v1/jobs/{job_id}/download"),
    ("HEAD", "/v1/jobs/{job_id}/download"),
    ("GET", "/v1/jobs/{job_id}/receipt"),
    ("POST", "/v1/jobs/{job_id}/shares"),
    ("GET", "/v1/jobs/{job_id}/shares"),
    ("DELETE", "/v1/jobs/{job_id}/shares"),
]
# Answers that carry a job id at `job_id`.
JOB_SOURCES: list[tuple[Operation, str]] = [
    (("POST", "/v1/jobs"), "201"),
    (("POST", "/v1/jobs"), "200"),
    (("POST", "/v1/jobs/{job_id}/retry"), "201"),
    (("GET", "/v1/jobs/{job_id}"), "200"),
]

# A batch's answer: its first item's job.
BATCH_JOB_ID = {"path.job_id": "$response.body#/jobs/0/job/job_id"}

MINER = "/v1/miners/{miner_id}"
# A claimed job's lease, from the claim's answer (its first job) or from the request of the call before.
CLAIMED = {"path.miner_id": "$request.path.miner_id", "path.job_id": "$response.body#/jobs/0/job_id"}
CLAIMED_LEASE = "$response.body#/jobs/0/lease_id"
STARTED = {"path.miner_id": "$request.path.miner_id", "path.job_id": "$response.body#/job_id"}
STARTED_LEASE = "$request.body#/lease_id"
LEASED_CALLS = ("start", "progress", "logs", "complete", "fail")

LINKS: list[Link] = [
    *(Link(source, status, target, JOB_ID) for source, status in JOB_SOURCES for target in JOB_OPERATIONS),
    *(
        Link(("POST", "/v1/jobs/batch"), status, target, BATCH_JOB_ID)
        for status in ("201", "200")
        for target in JOB_OPERATIONS
    ),
    Link(
        ("GET", "/v1/jobs/{job_id}/results"),
        "200",
        ("GET", "/v1/jobs/{job_id}/files/{path}"),
        {**JOB_ID, "path.path": "$response.body#/files/0/path"},
    ),
    Link(
        ("POST", "/v1/jobs/{job_id}/shares"),
        "201",
        ("DELETE", "/v1/jobs/{job_id}/shares/{share_id}"),
        {**JOB_ID, "path.share_id": "$response.body#/share_id"},
    ),
    Link(
        ("POST", "/v1/jobs/{job_id}/shares"),
        "201",
        ("GET", "/v1/shared/{token}"),
        {"path.token": "$response.body#/token"},
    ),
    Link(
        ("POST", "/v1/jobs/{job_id}/shares"),
        "201",
        ("HEAD", "/v1/shared/{token}"),
        {"path.token": "$response.body#/token"},
    ),
    Link(
        ("POST", "/v1/files"),
        "201",
        ("POST", "/v1/jobs"),
        {},
        {"type": "command", "input_file_id": "$response.body#/file_id"},
    ),
    Link(
        ("POST", "/v1/files"),
        "201",
        ("POST", "/v1/jobs/batch"),
        {},
        {"jobs": [{"type": "command", "input_file_id": "$response.body#/file_id"}]},
    ),
    *(
        Link(
            ("POST", "/v1/miners/register"),
            "200",
            ("POST", f"{MINER}/{verb}"),
            {"path.miner_id": "$response.body#/miner_id"},
        )
        for verb in ("heartbeat", "claim")
    ),
    *(
        Link(
            ("POST", f"{MINER}/claim"),
            "200",
            ("POST", f"{MINER}/jobs/{{job_id}}/{verb}"),
            CLAIMED,
            {"lease_id": CLAIMED_LEASE},
        )
        for verb in LEASED_CALLS
    ),
    Link(
        ("POST", f"{MINER}/claim"),
        "200",
        ("POST", f"{MINER}/jobs/complete"),
        {"path.miner_id": "$request.path.miner_id"},
        {"jobs": [{"job_id": "$response.body#/jobs/0/job_id", "lease_id": CLAIMED_LEASE}]},
    ),
    Link(
        ("POST", f"{MINER}/claim"),
        "200",
        ("GET", f"{MINER}/jobs/{{job_id}}/input"),
        {**CLAIMED, "query.lease_id": CLAIMED_LEASE},
    ),
    Link(
        ("POST", f"{MINER}/claim"),
        "200",
        ("PUT", f"{MINER}/jobs/{{job_id}}/files/{{path}}"),
        {**CLAIMED, "header.X-Lease-Id": CLAIMED_LEASE},
    ),
    Link(
        ("POST", f"{MINER}/claim"),
        "200",
        ("POST", f"{MINER}/heartbeat"),
        {"path.miner_id": "$request.path.miner_id"},
        {"lease_ids": [CLAIMED_LEASE]},
    ),
    *(
        Link(
            ("POST", f"{MINER}/jobs/{{job_id}}/start"),
            "200",
            ("POST", f"{MINER}/jobs/{{job_id}}/{verb}"),
            STARTED,
            {"lease_id": STARTED_LEASE},
        )
        for verb in ("progress", "logs", "complete", "fail")
    ),
    *(
        Link(("POST", "/v1/templates"), status, target, {"path.name": "$response.body#/name"})
        for status in ("201", "200")
        for target in (("GET", "/v1/templates/{name}"), ("DELETE", "/v1/templates/{name}"))
    ),
    Link(("POST", "/v1/templates"), "201", ("POST", "/v1/jobs"), {}, {"template": "$response.body#/name"}),
    Link(("POST", "/v1/admin/workflows"), "201", ("POST", "/v1/jobs"), {}, {"workflow": "$response.body#/workflow"}),
    Link(
        ("POST", "/v1/admin/keys"),
        "201",
        ("DELETE", "/v1/admin/keys/{key_id}"),
        {"path.key_id": "$response.body#/key_id"},
    ),
    Link(("POST", "/v1/admin/keys"), "201", ("GET", "/v1/admin/keys"), {"query.account": "$response.body#/account"}),
    Link(
        ("POST", "/v1/admin/keys"),
        "201",
        ("POST", "/v1/admin/accounts/{name}/plan"),
        {"path.name": "$response.body#/account"},
    ),
    *(
        Link(
            ("POST", "/v1/admin/keys"),
            "201",
            (method, "/v1/admin/accounts/{name}/limit"),
            {"path.name": "$response.body#/account"},
        )
        for method in ("PUT", "DELETE")
    ),
    Link(
        ("POST", "/v1/admin/keys"),
        "201",
        ("POST", "/v1/admin/credits"),
        {},
        {"account": "$response.body#/account", "amount": "1"},
    ),
]


def add_links(schema: dict[str, Any], links: list[Link]) -> None:
    """Write each link into its source operation's answer; a link naming an operation the schema lacks is a bug."""
    operation_ids = {
        (method.upper(), path): operation["operationId"]
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }
    for link in links:
        method, path = link.source
        answer = schema["paths"][path][method.lower()]["responses"].setdefault(link.status, {"description": "Success"})
        target = operation_ids[link.target]
        definition: dict[str, Any] = {"operationId": target, "parameters": link.parameters}
        if link.request_body is not None:
            definition["requestBody"] = link.request_body
        answer.setdefault("links", {})[target] = definition


def install_links(app: FastAPI, links: list[Link] = LINKS) -> None:
    """Wrap FastAPI's schema builder so the schema it caches carries the links."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_links(build(), links)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
