"""Fixtures for the results tests: the shared app fixtures with the background sweeper off (tests run it
with the injected clock), and a `world` that makes finished jobs through the real miner HTTP API."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from aitbc.settings import Settings
from aitbc.wiring import Coordinator
from tests.results.flow import World


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, run_results_sweeper=False)


@pytest.fixture
async def world(api: tuple[httpx.AsyncClient, Coordinator]) -> World:
    http, coordinator = api
    return World(http, coordinator)
