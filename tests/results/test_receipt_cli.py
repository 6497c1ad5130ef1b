"""`aitbc client receipt` and `get` against a real coordinator on a socket: the charge, the billed seconds and
how the job's time went, as its miner reported it; a receipt with no breakdown says so, and a job that has
not finished has no receipt yet (a clear error, exit 1)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aitbc.cli.main import app
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.results.flow import World, package_files
from tests.support.served import served_in_thread

TIMINGS = {
    "setup_seconds": 2.5,
    "model_load_seconds": 11.25,
    "model_warm": False,
    "run_seconds": 0.75,
    "upload_seconds": 0.05,
}


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False)
    async with coordinator_session(settings) as coordinator:
        admin, user = await coordinator.accounts.bootstrap()
    with served_in_thread(settings) as url:
        monkeypatch.setenv("AITBC_URL", url)
        monkeypatch.setenv("AITBC_API_KEY", user.secret)
        monkeypatch.setenv("AITBC_CONFIG", str(tmp_path / "profile.json"))
        monkeypatch.setenv("COLUMNS", "200")
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            world = World(http, admin_key=admin.secret)
            world.keys["alice"] = user.secret
            yield world


def aitbc(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


async def test_receipt_and_get_show_how_the_time_was_spent(served: World) -> None:
    done = await served.finished(package_files(), timings=TIMINGS)
    code, output = aitbc("client", "receipt", "--job-id", done.job_id)
    assert code == 0, output
    assert "setup 2.5 s · model load 11.25 s (cold) · run 0.75 s · upload 0.05 s" in output
    assert "queued" in output and "Charged" in output and "AITBC for" in output
    assert f"aitbc client verify --job-id {done.job_id}" in output

    code, output = aitbc("client", "receipt", "--job-id", done.job_id, "--json")
    assert code == 0, output
    shown = json.loads(output)
    assert shown["job_id"] == done.job_id and shown["receipt"]["resources"]["timings"] == TIMINGS
    assert shown["signature"] and shown["manifest"]["job_id"] == done.job_id

    code, output = aitbc("client", "get", "--job-id", done.job_id)
    assert code == 0, output
    assert "Time spent" in output and "model load 11.25 s (cold)" in output
    code, output = aitbc("client", "get", "--job-id", done.job_id, "--json")
    assert code == 0, output
    assert json.loads(output)["timings"] == TIMINGS

    code, output = aitbc("client", "verify", "--job-id", done.job_id)
    assert code == 0 and "Verified" in output, output


async def test_a_receipt_without_a_breakdown_and_a_job_without_a_receipt(served: World) -> None:
    plain = await served.finished(package_files())
    code, output = aitbc("client", "receipt", "--job-id", plain.job_id)
    assert code == 0, output
    assert "not reported" in output
    code, output = aitbc("client", "get", "--job-id", plain.job_id, "--json")
    assert code == 0 and json.loads(output)["timings"] is None, output

    job_id, _ = await served.submit()
    code, output = aitbc("client", "receipt", "--job-id", job_id)
    assert code == 1 and "its receipt is issued when it finishes" in output, output
    code, output = aitbc("client", "get", "--job-id", job_id)
    assert code == 0 and "Time spent" not in output, output
