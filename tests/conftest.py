"""Shared fixtures: settings on a temporary folder, a SQLite or PostgreSQL database, the app in-process."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import create_engine, text

from aitbc.api.app import create_app
from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.storage.sql.database import migrate
from aitbc.wiring import Coordinator, open_coordinator

POSTGRES_ADMIN_URL = os.environ.get("AITBC_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TEMPLATE = f"aitbc_test_template_{os.getpid()}"

pytest_plugins = ["tests.support.plugin"]


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database; each test gets a fresh copy of it (fast: CREATE DATABASE … TEMPLATE)."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {TEMPLATE}"))
    except Exception as error:  # pragma: no cover - depends on the machine
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is needed for these tests: {error}")
    template_url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{TEMPLATE}"
    migrate(template_url.replace("+psycopg", ""))
    yield template_url
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    name = f"aitbc_test_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("+psycopg", "") + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'aitbc.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, run_reaper=False)


@pytest.fixture
async def coordinator(settings: Settings, clock: ManualClock) -> AsyncIterator[Coordinator]:
    opened = await open_coordinator(settings, clock)
    yield opened
    await opened.close()


class Keys:
    """API keys of a few accounts, made through the real account service."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    async def make(self, account: str, role: Role) -> str:
        return (await self.coordinator.accounts.create_key(account, role)).secret


@pytest.fixture
async def api(settings: Settings, clock: ManualClock) -> AsyncIterator[tuple[httpx.AsyncClient, Coordinator]]:
    """The real app in-process (lifespan and all), and the coordinator behind it."""
    app = create_app(settings, clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aitbc.test") as http:
            yield http, app.state.coordinator
