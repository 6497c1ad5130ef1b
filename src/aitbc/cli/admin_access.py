"""Where an `aitbc admin …` command does its work: on the database directly (no server needed) or through the API
with an admin key; shared by the admin command modules."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from aitbc.cli.common import client
from aitbc.sdk.client import Client
from aitbc.sdk.config import read_profile

if TYPE_CHECKING:  # the server side loads only when a command works on the database directly
    from aitbc.wiring import Coordinator

T = TypeVar("T")

DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Work on this data folder's database directly (no server).")
]
DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="Work on this database directly (postgresql://…).")
]


def _direct(data_dir: Path | None, database_url: str | None, url: str | None, api_key: str | None) -> bool:
    """Direct on the database when a data folder or database is named; through the API when a URL or key
    is; otherwise through the API if the profile holds an admin key, else on the default data folder."""
    if data_dir is not None or database_url is not None:
        return True
    if url or api_key or os.environ.get("AITBC_URL") or os.environ.get("AITBC_ADMIN_API_KEY"):
        return False
    return not read_profile().get("admin_api_key")


def _admin_key(api_key: str | None) -> str | None:
    return api_key or os.environ.get("AITBC_ADMIN_API_KEY") or read_profile().get("admin_api_key") or None


def _on_database(data_dir: Path | None, database_url: str | None, work: Callable[[Coordinator], Awaitable[T]]) -> T:
    from aitbc.settings import Settings, default_data_dir
    from aitbc.wiring import coordinator_session

    settings = Settings(data_dir=data_dir or default_data_dir(), database_url=database_url, run_reaper=False)

    async def run() -> T:
        async with coordinator_session(settings) as coordinator:
            return await work(coordinator)

    return asyncio.run(run())


def run_as_admin(
    data_dir: Path | None,
    database_url: str | None,
    url: str | None,
    api_key: str | None,
    on_database: Callable[[Coordinator], Awaitable[T]],
    through_api: Callable[[Client], T],
) -> T:
    """Do an admin command's work where `_direct` says: on the database, or through the API as an admin."""
    if _direct(data_dir, database_url, url, api_key):
        return _on_database(data_dir, database_url, on_database)
    with client(url, _admin_key(api_key)) as api:
        return through_api(api)
