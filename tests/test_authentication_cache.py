"""Authentication answers from a cache of principals: a hit costs no database statement, and a revocation or
a plan change still counts at once, whoever makes it.

Real uvicorn servers on SQLite and PostgreSQL. Where a test shows that a change made through this replica
counts on its next request, the server's version check is put an hour apart, so only the change itself can
have emptied the cache. A change made straight on the database (`aitbc admin … --data-dir`) reaches the
server through the principal version it reads every half second: the test polls with a 1 s deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from aitbc.api.app import create_app
from aitbc.domain.accounts import Account, Principal
from aitbc.domain.errors import Unauthorized
from aitbc.domain.plans import Plan, Role
from aitbc.services.principal_cache import PrincipalCache
from aitbc.settings import Settings
from aitbc.storage.sql.database import migrate, sync_engine
from aitbc.storage.sql.tables import metadata, principal_version
from aitbc.wiring import Coordinator, open_coordinator
from tests.support.served import served_app_in_thread
from tests.support.stack import Stack

AN_HOUR = 3600.0
DIRECT_CHANGE_DEADLINE = 1.0  # what the issue promises for a change made straight on the database


@dataclass
class Served:
    url: str
    coordinator: Coordinator
    admin_key: str
    client_key: str
    client_key_id: str


def _keys(settings: Settings) -> tuple[str, str, str]:
    async def make() -> tuple[str, str, str]:
        coordinator = await open_coordinator(settings)
        try:
            admin = await coordinator.accounts.create_key("root", Role.ADMIN)
            client = await coordinator.accounts.create_key("carol", Role.CLIENT)
        finally:
            await coordinator.close()
        return admin.secret, client.secret, client.key.id

    return asyncio.run(make())


@contextmanager
def served(settings: Settings) -> Iterator[Served]:
    admin_key, client_key, client_key_id = _keys(settings)
    app = create_app(settings)
    with served_app_in_thread(app) as url:
        yield Served(url, app.state.coordinator, admin_key, client_key, client_key_id)


@contextmanager
def statements(coordinator: Coordinator) -> Iterator[list[str]]:
    """Every SQL statement the coordinator runs meanwhile (listeners on the real engines and connections)."""
    with coordinator.database.observed() as seen:
        yield seen


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """On SQLite the database in the data folder, where `aitbc admin … --data-dir` finds it."""
    url = database_url if database_url.startswith("postgresql") else None
    return Settings(data_dir=tmp_path / "data", database_url=url, run_reaper=False)


def _get(url: str, path: str, key: str) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers={"X-Api-Key": key}, timeout=10)


def test_a_cache_hit_runs_no_statement(settings: Settings) -> None:
    with served(settings) as server:
        principals = server.coordinator.accounts.principals
        principals.check_seconds = AN_HOUR
        with statements(server.coordinator) as first:
            assert _get(server.url, "/v1/admin/runtime", server.admin_key).status_code == 200
        assert any("api_keys" in statement for statement in first)  # the miss: the key read once
        with statements(server.coordinator) as hits:
            for _ in range(5):
                assert _get(server.url, "/v1/admin/runtime", server.admin_key).status_code == 200
        assert hits == []


def test_a_key_revoked_through_the_api_is_refused_on_the_next_request(settings: Settings) -> None:
    with served(settings) as server:
        server.coordinator.accounts.principals.check_seconds = AN_HOUR
        assert _get(server.url, "/v1/billing/balance", server.client_key).status_code == 200
        assert len(server.coordinator.accounts.principals) == 1  # the client's principal is cached
        revoked = httpx.delete(
            f"{server.url}/v1/admin/keys/{server.client_key_id}", headers={"X-Api-Key": server.admin_key}, timeout=10
        )
        assert revoked.status_code == 200, revoked.text
        refused = _get(server.url, "/v1/billing/balance", server.client_key)
        assert refused.status_code == 401 and "revoked" in refused.text


def test_a_plan_changed_through_the_api_applies_on_the_next_request(settings: Settings) -> None:
    with served(settings) as server:
        server.coordinator.accounts.principals.check_seconds = AN_HOUR
        before = _get(server.url, "/v1/billing/balance", server.client_key)
        assert before.status_code == 200 and before.json()["plan"] == "free"
        changed = httpx.post(
            f"{server.url}/v1/admin/accounts/carol/plan",
            json={"plan": "pro"},
            headers={"X-Api-Key": server.admin_key},
            timeout=10,
        )
        assert changed.status_code == 200, changed.text
        after = _get(server.url, "/v1/billing/balance", server.client_key)
        assert after.status_code == 200 and after.json()["plan"] == "pro"


def test_a_key_revoked_with_the_admin_cli_on_the_database_is_refused_within_a_second(
    settings: Settings, tmp_path: Path
) -> None:
    with served(settings) as server:
        assert _get(server.url, "/v1/billing/balance", server.client_key).status_code == 200
        assert len(server.coordinator.accounts.principals) == 1
        target = ["--data-dir", str(settings.data_dir)]
        if settings.database_url is not None:
            target += ["--database-url", settings.database_url]
        Stack(tmp_path / "cli").cli("admin", "keys", "revoke", server.client_key_id, *target)
        deadline = time.monotonic() + DIRECT_CHANGE_DEADLINE  # the revocation committed before the CLI exited
        while (status := _get(server.url, "/v1/billing/balance", server.client_key).status_code) == 200:
            assert time.monotonic() < deadline, "the coordinator still accepts the revoked key after 1 s"
            time.sleep(0.02)
        assert status == 401


async def test_unknown_and_revoked_keys_are_never_cached(coordinator: Coordinator) -> None:
    principals = coordinator.accounts.principals
    for number in range(2000):
        with pytest.raises(Unauthorized):
            await coordinator.accounts.authenticate(f"aitbc_{number:064d}")
    created = await coordinator.accounts.create_key("dave", Role.CLIENT)
    await coordinator.accounts.revoke_key(created.key.id)
    with pytest.raises(Unauthorized):
        await coordinator.accounts.authenticate(created.secret)
    assert len(principals) == 0


async def test_the_cache_keeps_the_most_recently_used_up_to_its_size(coordinator: Coordinator) -> None:
    principals = coordinator.accounts.principals
    principals.max_size = 3
    secrets = [(await coordinator.accounts.create_key(f"user{n}", Role.CLIENT)).secret for n in range(5)]
    for secret in secrets:
        await coordinator.accounts.authenticate(secret)
    assert len(principals) == 3
    principals.check_seconds = AN_HOUR
    with statements(coordinator) as seen:
        for secret in secrets[2:]:
            await coordinator.accounts.authenticate(secret)
    assert seen == []  # the three most recent are the ones kept


def test_a_row_read_while_the_cache_was_emptied_is_not_kept() -> None:
    """A revocation that commits while another request reads the key: that request's row is not cached."""
    alice = Principal(Account("acct_alice", "alice", Plan.FREE, datetime.now(UTC)), "key_alice", Role.CLIENT)

    async def version() -> int:
        return 0

    cache = PrincipalCache(version)
    generation = cache.generation  # a lookup starts reading the key ...
    cache.clear()  # ... a revocation empties the cache ...
    cache.put("hash", alice, generation)  # ... and the row read before it is dropped
    assert cache.get("hash") is None
    cache.put("hash", alice, cache.generation)
    assert cache.get("hash") == alice


def test_the_migration_makes_the_version_row_that_the_tables_declare(database_url: str) -> None:
    migrate(database_url)
    engine = sync_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = [d for d in compare_metadata(context, metadata) if "principal_version" in repr(d)]
            rows = [tuple(row) for row in connection.execute(select(principal_version)).all()]
    finally:
        engine.dispose()
    assert differences == [] and rows == [(1, 0)]


async def test_requests_that_find_the_version_check_due_share_one_read() -> None:
    reads: list[int] = []
    release = asyncio.Event()
    now = [0.0]

    async def version() -> int:
        reads.append(1)
        await release.wait()
        return len(reads)

    cache = PrincipalCache(version, check_seconds=0.5, monotonic=lambda: now[0])
    waiting = [asyncio.create_task(cache.refresh()) for _ in range(50)]
    await asyncio.sleep(0)  # every refresh reaches the one check in flight
    release.set()
    await asyncio.gather(*waiting)
    assert len(reads) == 1
    await cache.refresh()  # not due yet: no read
    now[0] = 0.5
    await cache.refresh()
    assert len(reads) == 2
