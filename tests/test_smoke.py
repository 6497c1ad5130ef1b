"""The app starts on both databases and answers its health check."""

from __future__ import annotations

import httpx

from aitbc.wiring import Coordinator


async def test_health(api: tuple[httpx.AsyncClient, Coordinator]) -> None:
    http, _ = api
    response = await http.get("/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
