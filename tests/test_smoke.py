"""The app starts on both databases and answers its health check."""

from __future__ import annotations

import httpx

from aitbc.wiring import Coordinator


async def test_health(api: tuple[httpx.AsyncClient, Coordinator]) -> None:
    http, _ = api
    response = await http.get("/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_routine_miner_polls_stay_out_of_the_access_log() -> None:
    import logging

    from aitbc.api.access_log import QuietMinerPolls

    def record(method: str, path: str, status: int) -> logging.LogRecord:
        return logging.LogRecord(
            "uvicorn.access",
            logging.INFO,
            "",
            0,
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5", method, path, "1.1", status),
            None,
        )

    quiet = QuietMinerPolls()
    assert not quiet.filter(record("POST", "/v1/miners/miner_abc/claim", 200))
    assert not quiet.filter(record("POST", "/v1/miners/miner_abc/heartbeat", 200))
    assert quiet.filter(record("POST", "/v1/miners/miner_abc/claim", 409))
    assert quiet.filter(record("POST", "/v1/miners/miner_abc/jobs/job_x/complete", 200))
    assert quiet.filter(record("POST", "/v1/jobs", 201))
