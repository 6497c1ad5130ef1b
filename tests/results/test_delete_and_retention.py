"""Deleting results and retention by plan: blobs removed, the job kept in history marked deleted / expired,
downloads answer 410; expiry follows the account's plan (and moves when the plan changes); the sweeper
runs on the injected clock, from the app's lifespan too, and finishes purges a crash left behind."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from aitbc.api.app import create_app
from aitbc.domain.clock import ManualClock
from aitbc.domain.package import ResultsState
from aitbc.domain.plans import Plan
from aitbc.settings import Settings
from aitbc.storage.sql.results import SqlResultStore
from tests.results.flow import World, package_files

DAY = 86400


def blob_files(settings: Settings, job_id: str) -> list[Path]:
    folder = settings.blob_dir / "results" / job_id
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def parse_z(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_delete_removes_files_and_keeps_the_job(world: World, settings: Settings) -> None:
    done = await world.finished(package_files())
    assert len(blob_files(settings, done.job_id)) == len(done.files)
    deleted = await world.http.delete(f"/v1/jobs/{done.job_id}/results", headers=done.headers)
    assert deleted.status_code == 200 and deleted.json()["results"] == "deleted"
    assert blob_files(settings, done.job_id) == []
    job = (await world.http.get(f"/v1/jobs/{done.job_id}", headers=done.headers)).json()
    assert job["status"] == "completed" and job["results"] == "deleted"
    for path in ("/download", "/files/result.txt", "/results"):
        response = await world.http.get(f"/v1/jobs/{done.job_id}{path}", headers=done.headers)
        assert response.status_code == 410 and "deleted" in response.json()["message"], path
    again = await world.http.delete(f"/v1/jobs/{done.job_id}/results", headers=done.headers)
    assert again.status_code == 200 and again.json()["results"] == "deleted"
    events = await world.coordinator.job_store.job_events(done.job_id, ["results"])
    assert [e.data for e in events] == [{"results": "deleted"}]


async def test_deleting_a_running_jobs_results_is_refused(world: World, settings: Settings) -> None:
    job_id, headers, miner, lease_id = await world.running()
    uploaded = await miner.upload(job_id, lease_id, "artifacts/partial.bin", b"so far")
    assert uploaded.status_code == 200
    refused = await world.http.delete(f"/v1/jobs/{job_id}/results", headers=headers)
    assert refused.status_code == 409 and "running" in refused.json()["message"]
    assert len(blob_files(settings, job_id)) == 1
    finished = await miner.finish(job_id, lease_id, {"result.txt": b"ok"})
    assert finished.status_code == 200, "the miner's work was not disturbed"


async def test_results_expire_by_plan(world: World, clock: ManualClock, settings: Settings) -> None:
    await world.client("alice", Plan.FREE)
    await world.client("bob", Plan.PRO)
    free = await world.finished(package_files(), account="alice")
    pro = await world.finished(package_files(), account="bob")
    free_job = (await world.http.get(f"/v1/jobs/{free.job_id}/results", headers=free.headers)).json()
    pro_job = (await world.http.get(f"/v1/jobs/{pro.job_id}/results", headers=pro.headers)).json()
    completed = parse_z(free_job["completed_at"])
    assert parse_z(free_job["results_expire_at"]) == completed + timedelta(days=7)
    assert parse_z(pro_job["results_expire_at"]) == parse_z(pro_job["completed_at"]) + timedelta(days=30)
    view = await world.coordinator.job_views.view(await world.coordinator.job_store.get_job(free.job_id))  # type: ignore[arg-type]
    assert view.results_expire_at == completed + timedelta(days=7)

    clock.advance(7 * DAY - 1)
    assert (await world.coordinator.retention.run_once()).expired == 0
    assert (await world.http.get(f"/v1/jobs/{free.job_id}/download", headers=free.headers)).status_code == 200
    clock.advance(2)
    # Past expiry the results are gone at once, before the sweeper has removed the files.
    late = await world.http.get(f"/v1/jobs/{free.job_id}/download", headers=free.headers)
    assert late.status_code == 410 and "expired" in late.json()["message"]
    report = await world.coordinator.retention.run_once()
    assert report.expired == 1
    assert blob_files(settings, free.job_id) == []
    assert len(blob_files(settings, pro.job_id)) == len(pro.files)
    job = (await world.http.get(f"/v1/jobs/{free.job_id}", headers=free.headers)).json()
    assert job["results"] == "expired" and job["status"] == "completed"
    gone = await world.http.get(f"/v1/jobs/{free.job_id}/download", headers=free.headers)
    assert gone.status_code == 410 and "expired" in gone.json()["message"]
    assert (await world.coordinator.retention.run_once()).expired == 0
    assert (await world.http.get(f"/v1/jobs/{pro.job_id}/download", headers=pro.headers)).status_code == 200


async def test_changing_the_plan_moves_the_expiry(world: World, clock: ManualClock, settings: Settings) -> None:
    await world.client("carol", Plan.FREE)
    done = await world.finished(package_files(), account="carol")
    before = (await world.http.get(f"/v1/jobs/{done.job_id}/results", headers=done.headers)).json()
    await world.coordinator.accounts.set_plan("carol", Plan.ENTERPRISE)
    after = (await world.http.get(f"/v1/jobs/{done.job_id}/results", headers=done.headers)).json()
    assert parse_z(after["results_expire_at"]) - parse_z(before["results_expire_at"]) == timedelta(days=83)
    clock.advance(30 * DAY)
    assert (await world.coordinator.retention.run_once()).expired == 0
    await world.coordinator.accounts.set_plan("carol", Plan.PRO)
    clock.advance(1)
    assert (await world.coordinator.retention.run_once()).expired == 1
    assert blob_files(settings, done.job_id) == []


async def test_a_purge_left_by_a_crash_is_finished(world: World, clock: ManualClock, settings: Settings) -> None:
    done = await world.finished(package_files())
    store = SqlResultStore(world.coordinator.database)
    # The coordinator died right after marking the results deleted, before removing the files.
    retired = await store.retire_results(done.job_id, ResultsState.DELETED, clock.now())
    assert retired is not None and retired.results_state == "deleted"
    assert await store.retire_results(done.job_id, ResultsState.DELETED, clock.now()) is None
    assert len(blob_files(settings, done.job_id)) == len(done.files)
    assert (await world.coordinator.retention.run_once()).purged == 0, "a purge may still be under way"
    clock.advance(settings.purge_retry_seconds + 1)
    assert (await world.coordinator.retention.run_once()).purged == 1
    assert blob_files(settings, done.job_id) == []
    assert await store.queued_purges(clock.now(), 10) == []


async def test_the_lifespan_runs_the_sweeper(settings: Settings, clock: ManualClock) -> None:
    swept = replace(settings, run_results_sweeper=True, results_sweep_interval_seconds=0.05)
    app = create_app(swept, clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aitbc.test") as http:
            world = World(http, app.state.coordinator)
            done = await world.finished(package_files())
            clock.advance(8 * DAY)
            for _ in range(200):
                job = (await http.get(f"/v1/jobs/{done.job_id}", headers=done.headers)).json()
                if job["results"] == "expired" and not blob_files(swept, done.job_id):
                    break  # the files go right after the state changes, in the same pass
                await asyncio.sleep(0.05)
            assert job["results"] == "expired"
            assert blob_files(swept, done.job_id) == []
