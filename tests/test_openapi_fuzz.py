"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis), against a real
server on a real SQLite (or PostgreSQL) database, with real keys: a client key for the client's calls, a miner key for the
miner's, an admin key for the admin's.

Every operation gets examples that follow its schema (positive) and examples that break it (negative). Half of
them are aimed at live objects: a fresh set of jobs in every state (pending, claimed, running, completed with
results and a share link, failed), a registered miner with live leases, an uploaded input file, an expendable
key and account; the rest keep the fuzzer's own ids. Asserted at the end, over all operations: no answer is a
5xx, and every operation answered 2xx at least once (a schema so strict, or ids so dead, that the handlers are
never reached would prove nothing).

AITBC_FUZZ_EXAMPLES sets the examples per operation and mode (default 8, which keeps this file near a minute on
a small machine); raise it for a deeper run. AITBC_FUZZ_DATABASE=postgres runs it on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core import NotSet
from schemathesis.schemas import APIOperation
from sqlalchemy import create_engine, text

from aitbc.domain.manifest import public_key_text, sign
from aitbc.domain.plans import Plan, PlanLimits, Role
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.conftest import POSTGRES_ADMIN_URL
from tests.support.served import served_in_thread

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("AITBC_FUZZ_EXAMPLES", "8"))
# The rate limiter is tested on its own; here it would only starve the fuzzer of 2xx answers.
UNLIMITED = PlanLimits(retention_days=30, requests_per_minute=10**7, requests_per_hour=10**8, max_concurrent_jobs=10**6)


@dataclass
class Keys:
    client: str
    miner: str
    admin: str
    client_account: str
    canceler: str  # another client's: a cancel by filter would take the live objects of the fuzz client's


async def _make_keys(settings: Settings) -> Keys:
    async with coordinator_session(settings) as coordinator:
        made = {role: await coordinator.accounts.create_key(f"fuzz-{role.value}", role) for role in Role}
        canceler = await coordinator.accounts.create_key("fuzz-canceler", Role.CLIENT)
    return Keys(
        client=made[Role.CLIENT].secret,
        miner=made[Role.MINER].secret,
        admin=made[Role.ADMIN].secret,
        client_account="fuzz-client",
        canceler=canceler.secret,
    )


@dataclass
class Served:
    url: str
    keys: Keys
    http: httpx.Client

    def call(self, method: str, path: str, key: str, expect: int = 200, **kwargs: Any) -> Any:
        headers = {"X-Api-Key": key, **kwargs.pop("headers", {})}
        response = self.http.request(method, path, headers=headers, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()


@pytest.fixture(scope="module")
def fuzz_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLite by default; AITBC_FUZZ_DATABASE=postgres fuzzes a fresh PostgreSQL database instead."""
    if os.environ.get("AITBC_FUZZ_DATABASE", "sqlite") != "postgres":
        yield f"sqlite:///{tmp_path_factory.mktemp('fuzz-db') / 'aitbc.db'}"
        return
    name = f"aitbc_fuzz_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("+psycopg", "") + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fuzz_database_url: str) -> Iterator[Served]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("fuzz") / "data",
        database_url=fuzz_database_url,
        run_reaper=False,
        # A claim or heartbeat answers at once: long-polling is tested elsewhere, here it would only wait.
        max_claim_wait_seconds=0,
        plan_limits=dict.fromkeys(Plan, UNLIMITED),
    )
    keys = asyncio.run(_make_keys(settings))
    with served_in_thread(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        served = Served(url, keys, http)
        served.call("POST", "/v1/admin/credits", keys.admin, json={"account": keys.client_account, "amount": "100000"})
        yield served


@dataclass
class Lease:
    job_id: str
    lease_id: str


@dataclass
class World:
    """Live objects for one operation's examples, made through the API the way a client and a miner would."""

    miner_id: str
    pending: str
    claimed: Lease
    running: Lease
    completed: str
    failed: str
    paths: list[str]
    share_id: str
    token: str
    file_id: str
    key_id: str
    account: str
    template: str

    def jobs_for(self, path: str) -> list[str]:
        """The jobs worth aiming a client's call at: results live only on the completed one."""
        if any(word in path for word in ("/results", "/download", "/files/", "/receipt", "/shares")):
            return [self.completed]
        return [self.pending, self.claimed.job_id, self.running.job_id, self.completed, self.failed]


def build_world(served: Served, number: int) -> World:
    keys = served.keys
    signing_key = Ed25519PrivateKey.generate()
    miner_id = served.call(
        "POST",
        "/v1/miners/register",
        keys.miner,
        json={
            "name": f"fuzz-miner-{number}",
            "runtimes": ["command"],
            "max_concurrency": 8,
            "public_key": public_key_text(signing_key),
        },
    )["miner_id"]
    miner = f"/v1/miners/{miner_id}"
    uploaded = served.call("POST", "/v1/files", keys.client, 201, params={"name": "fuzz.txt"}, content=b"input\n")
    for _ in range(4):
        served.call(
            "POST", "/v1/jobs", keys.client, 201, json={"type": "command", "input_file_id": uploaded["file_id"]}
        )
    claimed = served.call("POST", f"{miner}/claim", keys.miner, json={"max_jobs": 4, "wait_seconds": 0})["jobs"]
    assert len(claimed) == 4, claimed
    leases = [Lease(job["job_id"], job["lease_id"]) for job in claimed]
    for lease in leases[1:]:
        served.call("POST", f"{miner}/jobs/{lease.job_id}/start", keys.miner, json={"lease_id": lease.lease_id})
    finished, failed = leases[2], leases[3]
    files = {"result.txt": b"fuzz\n", "artifacts/data.bin": bytes(range(256))}
    for path, data in files.items():
        served.call(
            "PUT",
            f"{miner}/jobs/{finished.job_id}/files/{path}",
            keys.miner,
            content=data,
            headers={"X-Lease-Id": finished.lease_id},
        )
    manifest = {
        "job_id": finished.job_id,
        "miner_id": miner_id,
        "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files.items()],
    }
    served.call(
        "POST",
        f"{miner}/jobs/{finished.job_id}/complete",
        keys.miner,
        json={"lease_id": finished.lease_id, "manifest": manifest, "signature": sign(signing_key, manifest)},
    )
    served.call("POST", f"{miner}/jobs/{failed.job_id}/fail", keys.miner, json={"lease_id": failed.lease_id})
    nobody = {"type": "fuzz-nobody-runs-this", "queue_timeout_seconds": 3600}  # a miner is connected: it waits
    pending = served.call("POST", "/v1/jobs", keys.client, 201, json=nobody)["job_id"]
    share = served.call("POST", f"/v1/jobs/{finished.job_id}/shares", keys.client, 201, json={})
    expendable = served.call(
        "POST", "/v1/admin/keys", keys.admin, 201, json={"name": f"fuzz-expendable-{number}", "role": "client"}
    )
    return World(
        miner_id=miner_id,
        pending=pending,
        claimed=leases[0],
        running=leases[1],
        completed=finished.job_id,
        failed=failed.job_id,
        paths=[*files, "output.sha256"],
        share_id=share["share_id"],
        token=share["token"],
        file_id=uploaded["file_id"],
        key_id=expendable["key_id"],
        account=expendable["account"],
        template=live_template(served, number),
    )


def live_template(served: Served, number: int) -> str:
    """A template of the fuzz client's: a fresh one while the account is under its cap of templates, else one
    the fuzzer made."""
    body = {"name": f"fuzz-template-{number}", "type": "command", "replace": True}
    made = served.http.post("/v1/templates", json=body, headers={"X-Api-Key": served.keys.client})
    if made.status_code in (200, 201):
        name: str = made.json()["name"]
        return name
    assert made.status_code == 409, made.text
    return str(served.call("GET", "/v1/templates", served.keys.client)[0]["name"])


def lift_spending_limit(served: Served, path: str) -> None:
    """A monthly cap the fuzzer set on its client (a tiny one refuses every later submit, the next worlds'
    included) is lifted after each call that may have set one."""
    if path == "/v1/billing/limit":
        served.call("DELETE", path, served.keys.client)


BY_FILTER = "/v1/jobs/cancel"  # cancels every matching job of the caller's


def key_for(served: Served, operation: APIOperation) -> str:
    if operation.path == BY_FILTER:
        return served.keys.canceler
    if operation.path.startswith("/v1/admin"):
        return served.keys.admin
    if operation.path.startswith("/v1/miners"):
        return served.keys.miner
    return served.keys.client


def aim_at_live_objects(case: Any, world: World, data: st.DataObject) -> None:
    """Point the case's ids at live objects; the fuzzed values elsewhere in the request stay as generated."""
    path = case.path_parameters or {}
    miner_call = case.operation.path.startswith("/v1/miners/{miner_id}/jobs")
    lease = data.draw(st.sampled_from([world.claimed, world.running])) if miner_call else None
    if "miner_id" in path:
        path["miner_id"] = world.miner_id
    if "job_id" in path:
        path["job_id"] = lease.job_id if lease else data.draw(st.sampled_from(world.jobs_for(case.operation.path)))
    if "path" in path and not miner_call:
        path["path"] = data.draw(st.sampled_from(world.paths))
    if "share_id" in path:
        path["share_id"] = world.share_id
    if "token" in path:
        path["token"] = world.token
    if "key_id" in path:
        path["key_id"] = world.key_id
    if "name" in path:
        path["name"] = world.template if case.operation.path.startswith("/v1/templates") else world.account
    if lease is not None:
        if isinstance(case.body, dict) and "lease_id" in case.body:
            case.body["lease_id"] = lease.lease_id
        if case.query and "lease_id" in case.query:
            case.query["lease_id"] = lease.lease_id
        if case.headers and "X-Lease-Id" in case.headers:
            case.headers["X-Lease-Id"] = lease.lease_id
    if isinstance(case.body, dict):
        if "input_file_id" in case.body:
            case.body["input_file_id"] = world.file_id
        batch = case.body.get("jobs")
        for item in batch if isinstance(batch, list) else []:  # a batch's items
            if isinstance(item, dict) and "input_file_id" in item:
                item["input_file_id"] = world.file_id
        first = batch[0] if isinstance(batch, list) and batch else None
        if lease is not None and isinstance(first, dict) and "job_id" in first:
            # A batch complete aimed at a live job is that job alone: its generated siblings and free fields
            # nearly always carry what the schema cannot say (NUL in text, moments out of range), which refuses
            # the whole body, so no generated batch reached the handler. Unaimed examples fuzz the rest.
            case.body["jobs"] = [{"job_id": lease.job_id, "lease_id": lease.lease_id}]
        if "account" in case.body:
            case.body["account"] = world.account
        if "lease_ids" in case.body:
            case.body["lease_ids"] = [world.claimed.lease_id, world.running.lease_id]


def let_submits_wait(case: Any) -> None:
    """A generated job is of a type no connected miner runs (the world's miner runs `command`), which a submit
    refuses unless the job may wait: give each job a queue timeout where the example did not set one."""
    if case.operation.method.upper() != "POST" or case.operation.path not in ("/v1/jobs", "/v1/jobs/batch"):
        return
    body = case.body if isinstance(case.body, dict) else {}
    items = body.get("jobs") if case.operation.path.endswith("/batch") else [body]
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            item.setdefault("queue_timeout_seconds", 3600)


@dataclass
class Findings:
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    server_errors: list[str] = field(default_factory=list)

    def record(self, label: str, mode: GenerationMode, case: Any, response: Any) -> None:
        self.statuses[label][response.status_code] += 1
        if response.status_code >= 500 and len(self.server_errors) < 200:
            self.server_errors.append(
                f"{label} ({mode.value}) -> {response.status_code}: path={case.path_parameters} "
                f"query={case.query} headers={ {k: v for k, v in (case.headers or {}).items() if k != 'X-Api-Key'} } "
                f"body={'' if isinstance(case.body, NotSet) else str(case.body)[:300]!r}"
            )

    def never_2xx(self) -> list[str]:
        return sorted(label for label, counts in self.statuses.items() if not any(200 <= s < 300 for s in counts))

    def clean(self) -> bool:
        return not self.server_errors and not self.never_2xx()

    def report(self) -> str:
        lines = [f"{len(self.server_errors)} answers were 5xx:", *self.server_errors]
        lines.append(f"operations that never answered 2xx: {self.never_2xx()}")
        lines.append("statuses per operation:")
        lines.extend(f"  {label}: {dict(sorted(counts.items()))}" for label, counts in self.statuses.items())
        return "\n".join(lines)


def fuzz_operation(served: Served, operation: APIOperation, world: World, findings: Findings) -> None:
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            fuzz_mode(served, operation, world, findings, mode)
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
            # Nothing in this operation can be broken (no parameters, no body): there is no negative example.


def fuzz_mode(served: Served, operation: APIOperation, world: World, findings: Findings, mode: GenerationMode) -> None:
    key = key_for(served, operation)
    strategy = operation.as_strategy(generation_mode=mode)

    @given(data=st.data())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def examples(data: st.DataObject) -> None:
        case = data.draw(strategy)
        if data.draw(st.booleans()):
            aim_at_live_objects(case, world, data)
        let_submits_wait(case)
        # Each role's own key, in every mode: the point is to reach the handlers, not to fuzz the key.
        case.headers = {**(case.headers or {}), "X-Api-Key": key}
        response = case.call(base_url=served.url, timeout=60)
        findings.record(operation.label, mode, case, response)
        lift_spending_limit(served, operation.path)

    examples()


def test_every_operation_reached_and_no_server_error(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    findings = Findings()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40, [o.label for o in operations]
    shared = build_world(served, 0)
    for number, operation in enumerate(operations, start=1):
        # A call that changes an object (cancel, complete, revoke…) may use it up: each of those gets fresh ones.
        changes_objects = "{" in operation.path and operation.method.upper() not in ("GET", "HEAD")
        world = build_world(served, number) if changes_objects else shared
        if operation.path == BY_FILTER:  # jobs of its own for it to cancel, tagged as its examples may ask
            for tag in ("a", "fuzz", "0"):
                served.call("POST", "/v1/jobs", served.keys.canceler, 201, json={"type": "command", "tags": [tag]})
        fuzz_operation(served, operation, world, findings)
    assert findings.clean(), findings.report()


def test_links_carry_live_ids_in_stateful_runs(served: Served) -> None:
    """Schemathesis follows the schema's links from call to call (submit, then status, cancel, shares…; create a
    key, then revoke it…): no 5xx, and the links deliver ids the next call accepts."""
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    links = [
        name
        for item in schema.raw_schema["paths"].values()
        for operation in item.values()
        for answer in operation["responses"].values()
        for name in answer.get("links", {})
    ]
    assert len(links) >= 60
    findings = Findings()
    linked: Counter[str] = Counter()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            case.headers = {**(case.headers or {}), "X-Api-Key": key_for(served, case.operation)}

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": served.url, "timeout": 60}

        def validate_response(self, response: Any, case: Any, *_args: Any, **_kwargs: Any) -> None:
            findings.record(case.operation.label, GenerationMode.POSITIVE, case, response)
            lift_spending_limit(served, case.operation.path)
            if case.operation.path_parameters and 200 <= response.status_code < 300:
                linked[case.operation.label] += 1

    # Hypothesis builds new scenarios from the choices of earlier ones; when the server's state has moved on
    # (a job claimed, a key revoked), a replayed choice meets other bundles and Hypothesis stops as "flaky".
    # Schemathesis's own runner restarts then; so does this loop, with the next seed, a bounded number of times.
    for attempt in range(4):
        seeded = seed(attempt)(type(f"Attempt{attempt}", (Machine,), {}))
        try:
            seeded.run(
                settings=settings(
                    max_examples=EXAMPLES * 2,
                    stateful_step_count=8,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
            )
            break
        except Flaky:
            continue  # every call made so far is recorded in `findings`
    assert not findings.server_errors, "\n".join(findings.server_errors)
    assert len(linked) >= 2, f"calls with ids in their path that answered 2xx: {dict(linked)}; all: {findings.statuses}"
