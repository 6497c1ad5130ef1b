"""Disk quotas, through the real API with real files on disk: a job's uploads stay under the operator's
limit (every attempt's files, listed or not, count) and one that would pass it is refused while streaming
with nothing stored; input files stay under the plan's quota and are deleted after the plan's retention;
the sweeper purges every blob no available result refers to, but never an upload still in flight."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from aitbc.cli.main import app as cli_app
from aitbc.domain.clock import ManualClock
from aitbc.domain.errors import Conflict
from aitbc.domain.plans import DEFAULT_PLAN_LIMITS, Plan
from aitbc.settings import Settings
from aitbc.storage.sql.tables import input_files, result_files
from aitbc.wiring import Coordinator
from tests.results.flow import World

JOB_QUOTA = 100_000
GRACE = 600
DAY = 86400
# Chunks bigger than a file buffer, so a streaming upload's partial blob grows on disk chunk by chunk.
CHUNK = 20_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    plans = {
        Plan.FREE: replace(DEFAULT_PLAN_LIMITS[Plan.FREE], input_storage_bytes=10_000),
        Plan.PRO: replace(DEFAULT_PLAN_LIMITS[Plan.PRO], input_storage_bytes=30_000),
        Plan.ENTERPRISE: DEFAULT_PLAN_LIMITS[Plan.ENTERPRISE],
    }
    return replace(
        settings,
        max_job_upload_bytes=JOB_QUOTA,
        max_result_file_bytes=80_000,
        purge_grace_seconds=GRACE,
        blob_scan_interval_seconds=0,
        plan_limits=plans,
    )


def blobs_on_disk(settings: Settings, prefix: str) -> list[Path]:
    folder = settings.blob_dir / prefix
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def recorded_result_bytes(coordinator: Coordinator, job_id: str) -> int:
    query = select(func.coalesce(func.sum(result_files.c.size), 0)).where(result_files.c.job_id == job_id)
    return await coordinator.database.read(lambda connection: int(connection.execute(query).scalar_one()))


async def recorded_input_files(coordinator: Coordinator) -> list[str]:
    rows = await coordinator.database.read(lambda connection: connection.execute(select(input_files.c.id)).all())
    return [str(r.id) for r in rows]


async def sweep_after_grace(coordinator: Coordinator, clock: ManualClock) -> None:
    """Two passes a grace period apart: the first sees what is unreferenced, the second may remove it."""
    await coordinator.retention.run_once()
    clock.advance(GRACE + 1)
    await coordinator.retention.run_once()


def assert_no_partials(settings: Settings) -> None:
    assert [p for p in settings.blob_dir.rglob("*.partial")] == []


# -- the per-job upload quota ------------------------------------------------------------------------------


async def test_an_upload_past_the_job_quota_is_413_and_stores_nothing(world: World, settings: Settings) -> None:
    job_id, _, miner, lease_id = await world.running()
    assert (await miner.upload(job_id, lease_id, "artifacts/a.bin", b"a" * 60_000)).status_code == 200
    refused = await miner.upload(job_id, lease_id, "artifacts/b.bin", b"b" * 60_000)
    assert refused.status_code == 413, refused.text
    message = refused.json()["message"]
    assert "per job" in message and "nothing was stored for artifacts/b.bin" in message
    assert len(blobs_on_disk(settings, f"results/{job_id}")) == 1
    assert_no_partials(settings)
    assert world.coordinator is not None
    assert await recorded_result_bytes(world.coordinator, job_id) == 60_000
    # Replacing a file counts its new size, not both; the bytes it replaced are removed at once.
    assert (await miner.upload(job_id, lease_id, "artifacts/a.bin", b"c" * 90_000)).status_code == 413
    assert (await miner.upload(job_id, lease_id, "artifacts/a.bin", b"c" * 70_000)).status_code == 200
    assert [p.stat().st_size for p in blobs_on_disk(settings, f"results/{job_id}")] == [70_000]
    assert (await miner.upload(job_id, lease_id, "result.txt", b"d" * 30_000)).status_code == 200
    assert (await miner.upload(job_id, lease_id, "artifacts/one-more-byte", b"e")).status_code == 413
    finished = await miner.finish(job_id, lease_id, {"artifacts/a.bin": b"c" * 70_000, "result.txt": b"d" * 30_000})
    assert finished.status_code == 200, finished.text


async def test_an_oversized_stream_is_stopped_where_it_passes_the_quota(world: World, settings: Settings) -> None:
    job_id, _, miner, lease_id = await world.running()
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(50):
            sent.append(CHUNK)
            yield b"x" * CHUNK

    response = await miner.http.put(
        f"/v1/miners/{miner.miner_id}/jobs/{job_id}/files/artifacts/huge.bin",
        content=endless(),
        headers={**miner.headers, "X-Lease-Id": lease_id},
    )
    assert response.status_code == 413, response.text
    assert sum(sent) <= settings.max_result_file_bytes + CHUNK, "the coordinator kept reading past the limit"
    assert blobs_on_disk(settings, f"results/{job_id}") == []
    assert world.coordinator is not None
    assert await recorded_result_bytes(world.coordinator, job_id) == 0


async def test_racing_uploads_cannot_both_take_the_last_bytes(world: World, settings: Settings) -> None:
    job_id, _, miner, lease_id = await world.running()
    first, second = await asyncio.gather(
        miner.upload(job_id, lease_id, "artifacts/one.bin", b"1" * 60_000),
        miner.upload(job_id, lease_id, "artifacts/two.bin", b"2" * 60_000),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 413], (first.text, second.text)
    assert len(blobs_on_disk(settings, f"results/{job_id}")) == 1
    assert world.coordinator is not None
    assert await recorded_result_bytes(world.coordinator, job_id) == 60_000


async def test_an_upload_still_streaming_when_the_job_finished_is_not_recorded(
    world: World, settings: Settings
) -> None:
    assert world.coordinator is not None
    job_id, _, miner, lease_id = await world.running()
    snapshot = await world.coordinator.job_store.get_job(job_id)
    assert snapshot is not None
    assert (await miner.finish(job_id, lease_id, {"result.txt": b"done"})).status_code == 200

    async def late() -> AsyncIterator[bytes]:
        yield b"l" * 5000

    # The upload passed the lease check before `complete` and records after it: refused, nothing kept.
    with pytest.raises(Conflict, match="no longer current"):
        await world.coordinator.uploads.store_result_file(snapshot, lease_id, "artifacts/late.bin", late())
    assert len(blobs_on_disk(settings, f"results/{job_id}")) == 1
    assert await recorded_result_bytes(world.coordinator, job_id) == len(b"done")


async def test_an_earlier_attempts_files_count_until_they_are_purged(world: World, settings: Settings) -> None:
    assert world.coordinator is not None
    job_id, headers, miner, lease_id = await world.running()
    assert (await miner.upload(job_id, lease_id, "artifacts/try1.bin", b"1" * 70_000)).status_code == 200
    failed = await miner.call("fail", job_id, {"lease_id": lease_id, "message": "out of memory", "retryable": True})
    assert failed.status_code == 200 and failed.json()["status"] == "pending"
    second_lease = (await miner.claim())[0]["lease_id"]
    assert second_lease != lease_id
    assert (await miner.call("start", job_id, {"lease_id": second_lease})).status_code == 200
    refused = await miner.upload(job_id, second_lease, "artifacts/try2.bin", b"2" * 40_000)
    assert refused.status_code == 413 and "every attempt's files counted" in refused.json()["message"]

    # A dead lease uploads nothing more: its files are purged on the next pass, which frees the quota.
    report = await world.coordinator.retention.run_once()
    assert report.result_files_purged == 1
    assert blobs_on_disk(settings, f"results/{job_id}/{lease_id}") == []

    files = {"artifacts/try2.bin": b"2" * 40_000}
    assert (await miner.finish(job_id, second_lease, files)).status_code == 200
    download = await world.http.get(f"/v1/jobs/{job_id}/files/artifacts/try2.bin", headers=headers)
    assert download.status_code == 200 and download.content == files["artifacts/try2.bin"]


# -- the purge of unreferenced blobs ---------------------------------------------------------------------------


async def test_files_no_available_result_refers_to_are_purged(
    world: World, settings: Settings, clock: ManualClock
) -> None:
    assert world.coordinator is not None
    # A completed job that also uploaded a file its manifest does not list.
    kept_id, headers, miner, lease_id = await world.running()
    assert (await miner.upload(kept_id, lease_id, "artifacts/unlisted.bin", b"u" * 5000)).status_code == 200
    listed = {"result.txt": b"the answer\n", "artifacts/model.bin": b"m" * 3000}
    assert (await miner.finish(kept_id, lease_id, listed)).status_code == 200
    # A job that failed after uploading, with no result.
    failed_id, _, failing, failing_lease = await world.running()
    assert (await failing.upload(failed_id, failing_lease, "artifacts/half.bin", b"h" * 4000)).status_code == 200
    body = {"lease_id": failing_lease, "message": "crashed", "reason": "runtime_error"}
    assert (await failing.call("fail", failed_id, body)).status_code == 200
    # A job still running keeps its uploads however long it takes.
    running_id, _, runner, running_lease = await world.running()
    assert (await runner.upload(running_id, running_lease, "artifacts/so-far.bin", b"s" * 100)).status_code == 200
    assert len(blobs_on_disk(settings, f"results/{kept_id}")) == 3

    first = await world.coordinator.retention.run_once()
    assert first.result_files_purged == 1, "the failed job's file, recorded and referenced by nothing"
    assert first.orphan_blobs_purged == 0, "the unlisted file's blob is first left alone for the grace period"
    assert len(blobs_on_disk(settings, f"results/{kept_id}")) == 3
    clock.advance(GRACE + 1)
    second = await world.coordinator.retention.run_once()
    assert (second.result_files_purged, second.orphan_blobs_purged) == (0, 1)

    kept = blobs_on_disk(settings, f"results/{kept_id}")
    assert sorted(p.stat().st_size for p in kept) == sorted(len(d) for d in listed.values())
    assert blobs_on_disk(settings, f"results/{failed_id}") == []
    assert await recorded_result_bytes(world.coordinator, failed_id) == 0
    assert len(blobs_on_disk(settings, f"results/{running_id}")) == 1
    zipped = await world.http.get(f"/v1/jobs/{kept_id}/download", headers=headers)
    assert zipped.status_code == 200
    for path, data in listed.items():
        single = await world.http.get(f"/v1/jobs/{kept_id}/files/{path}", headers=headers)
        assert single.status_code == 200 and hashlib.sha256(single.content).digest() == hashlib.sha256(data).digest()


async def test_a_crash_leftover_is_purged_but_an_upload_in_flight_is_not(
    world: World, settings: Settings, clock: ManualClock
) -> None:
    assert world.coordinator is not None
    job_id, _, miner, lease_id = await world.running()
    leftover = settings.blob_dir / "results" / job_id / lease_id / ".dead.1.2.partial"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"left by a coordinator that died mid-upload")
    stray_input = settings.blob_dir / "inputs" / "acct_gone" / "file_never_recorded"
    stray_input.parent.mkdir(parents=True)
    stray_input.write_bytes(b"written, never recorded")

    proceed = asyncio.Event()
    chunks_sent = 0

    async def slow_body() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for number in range(3):
            if number:
                await proceed.wait()
                proceed.clear()
            chunks_sent += 1
            yield b"z" * CHUNK

    upload = asyncio.create_task(
        miner.http.put(
            f"/v1/miners/{miner.miner_id}/jobs/{job_id}/files/artifacts/slow.bin",
            content=slow_body(),
            headers={**miner.headers, "X-Lease-Id": lease_id},
        )
    )

    def partials() -> list[Path]:
        return [p for p in blobs_on_disk(settings, f"results/{job_id}") if p != leftover and p.stat().st_size > 0]

    for _ in range(500):  # the upload's first chunk reaching the disk is the signal to go on
        if partials():
            break
        await asyncio.sleep(0.01)
    assert partials(), "the upload never started writing"

    await world.coordinator.retention.run_once()
    clock.advance(GRACE + 1)
    proceed.set()  # the upload makes progress between the two passes
    for _ in range(500):
        if chunks_sent == 2 and partials() and partials()[0].stat().st_size == 2 * CHUNK:
            break
        await asyncio.sleep(0.01)
    report = await world.coordinator.retention.run_once()
    assert report.orphan_blobs_purged == 2
    assert not leftover.exists() and not stray_input.exists()
    assert len(partials()) == 1, "the upload in flight was purged"

    proceed.set()
    response = await upload
    assert response.status_code == 200, response.text
    assert response.json()["size"] == 3 * CHUNK
    clock.advance(GRACE + 1)
    await sweep_after_grace(world.coordinator, clock)
    assert [p.stat().st_size for p in blobs_on_disk(settings, f"results/{job_id}")] == [3 * CHUNK]


# -- input files: quota by plan and the plan's retention ------------------------------------------------------


async def upload_input(http: httpx.AsyncClient, headers: dict[str, str], data: bytes) -> httpx.Response:
    return await http.post("/v1/files", params={"name": "data.bin"}, content=data, headers=headers)


async def test_input_files_have_a_quota_per_plan(world: World, settings: Settings) -> None:
    assert world.coordinator is not None
    free = await world.client("freda", Plan.FREE)
    pro = await world.client("pablo", Plan.PRO)
    assert (await upload_input(world.http, free, b"f" * 6000)).status_code == 201
    refused = await upload_input(world.http, free, b"f" * 6000)
    assert refused.status_code == 413, refused.text
    message = refused.json()["message"]
    assert "free plan" in message and "nothing was stored" in message and "7 days" in message
    for _ in range(5):
        assert (await upload_input(world.http, pro, b"p" * 6000)).status_code == 201
    assert (await upload_input(world.http, pro, b"p" * 6000)).status_code == 413
    assert len(await recorded_input_files(world.coordinator)) == 6
    assert len(blobs_on_disk(settings, "inputs")) == 6
    assert_no_partials(settings)
    # The quota is per account: the free account's neighbour is not affected by it.
    other = await world.client("fiona", Plan.FREE)
    assert (await upload_input(world.http, other, b"o" * 10_000)).status_code == 201


async def test_racing_input_uploads_cannot_both_pass_the_quota(world: World, settings: Settings) -> None:
    assert world.coordinator is not None
    free = await world.client("freda", Plan.FREE)
    first, second = await asyncio.gather(
        upload_input(world.http, free, b"1" * 6000), upload_input(world.http, free, b"2" * 6000)
    )
    assert sorted([first.status_code, second.status_code]) == [201, 413]
    assert len(blobs_on_disk(settings, "inputs")) == 1
    assert len(await recorded_input_files(world.coordinator)) == 1


async def test_input_files_are_deleted_after_the_plans_retention(
    world: World, settings: Settings, clock: ManualClock
) -> None:
    assert world.coordinator is not None
    free = await world.client("freda", Plan.FREE)
    pro = await world.client("pablo", Plan.PRO)
    old = (await upload_input(world.http, free, b"old input")).json()["file_id"]
    needed = (await upload_input(world.http, free, b"needed by a queued job")).json()["file_id"]
    submitted = await world.http.post("/v1/jobs", json={"type": "command", "input_file_id": needed}, headers=free)
    assert submitted.status_code == 201, submitted.text
    pro_file = (await upload_input(world.http, pro, b"kept 30 days")).json()["file_id"]
    clock.advance(7 * DAY - 1)
    assert (await world.coordinator.retention.run_once()).input_files_expired == 0
    clock.advance(2)
    fresh = (await upload_input(world.http, free, b"new")).json()["file_id"]
    report = await world.coordinator.retention.run_once()
    assert report.input_files_expired == 1
    assert sorted(await recorded_input_files(world.coordinator)) == sorted([needed, pro_file, fresh])
    assert list((settings.blob_dir / "inputs").glob(f"*/{old}")) == []
    assert len(blobs_on_disk(settings, "inputs")) == 3
    late = await world.http.post("/v1/jobs", json={"type": "command", "input_file_id": old}, headers=free)
    assert late.status_code == 404 and old in late.json()["message"]
    # Once the job that needed it has ended, the older file goes too; the quota it held is free again.
    job_id = submitted.json()["job_id"]
    assert (await world.http.post(f"/v1/jobs/{job_id}/cancel", headers=free)).status_code in (200, 202)
    assert (await world.coordinator.retention.run_once()).input_files_expired == 1
    assert sorted(await recorded_input_files(world.coordinator)) == sorted([pro_file, fresh])
    assert len(blobs_on_disk(settings, "inputs")) == 2
    assert (await upload_input(world.http, free, b"f" * 9000)).status_code == 201
    clock.advance(30 * DAY)
    await world.coordinator.retention.run_once()
    assert await recorded_input_files(world.coordinator) == []
    assert blobs_on_disk(settings, "inputs") == []


# -- the operator's setting ---------------------------------------------------------------------------------------


def test_serve_refuses_a_size_it_cannot_read() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--max-job-upload", "lots"])
    assert result.exit_code == 2
    assert "is not a size" in result.output


def test_the_default_job_quota_is_10_gib() -> None:
    assert Settings().max_job_upload_bytes == 10 * 1024**3
    assert [DEFAULT_PLAN_LIMITS[p].input_storage_bytes for p in Plan] == [1024**3, 10 * 1024**3, 100 * 1024**3]
