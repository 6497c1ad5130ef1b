"""Hostile input: upload paths that escape the package (`..`, absolute, backslashes, zip-slip names), manifests
naming such paths, sizes and hashes that disagree with the bytes, another tenant's job — each a clear 4xx that
stores nothing and leaves the job as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, func, select

from aitbc.domain.manifest import sign
from aitbc.settings import Settings
from aitbc.storage.sql.tables import job_results, result_files
from tests.results.flow import World

ESCAPING_UPLOADS = [
    "artifacts/%2e%2e/%2e%2e/evil.txt",
    "artifacts%2F..%2F..%2Fevil.txt",
    "%2Fetc%2Fpasswd",
    "artifacts%5C..%5C..%5Cevil.txt",
    "C:%5Cevil.txt",
    "artifacts/%2e/evil.txt",
    "artifacts//evil.txt",
    "evil.txt",
    "artifacts/line%0Abreak.txt",
]


async def stored_rows(world: World, job_id: str) -> tuple[int, int]:
    def counts(connection: Connection) -> tuple[int, int]:
        files = connection.execute(select(func.count()).where(result_files.c.job_id == job_id)).scalar_one()
        results = connection.execute(select(func.count()).where(job_results.c.job_id == job_id)).scalar_one()
        return files, results

    files, results = await world.coordinator.database.read(counts, snapshot=True)
    return int(files), int(results)


def blobs_of(settings: Settings, job_id: str) -> list[Path]:
    folder = settings.blob_dir / "results" / job_id
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.mark.parametrize("raw_path", ESCAPING_UPLOADS)
async def test_escaping_upload_paths_store_nothing(world: World, settings: Settings, raw_path: str) -> None:
    job_id, _headers, miner, lease_id = await world.running()
    response = await world.http.put(
        f"/v1/miners/{miner.miner_id}/jobs/{job_id}/files/{raw_path}",
        content=b"payload",
        headers={**miner.headers, "X-Lease-Id": lease_id},
    )
    assert 400 <= response.status_code < 500, (raw_path, response.status_code, response.text)
    assert blobs_of(settings, job_id) == []
    assert await stored_rows(world, job_id) == (0, 0)
    escaped = [p for p in settings.data_dir.rglob("evil.txt")] + list(settings.data_dir.parent.glob("evil.txt"))
    assert escaped == []


@pytest.mark.parametrize(
    "bad_path", ["artifacts/../result.txt", "/result.txt", "../../etc/passwd", "artifacts\\..\\x", "artifacts/"]
)
async def test_manifests_naming_escaping_paths_are_refused(world: World, bad_path: str) -> None:
    job_id, headers, miner, lease_id = await world.running()
    data = b"hello"
    assert (await miner.upload(job_id, lease_id, "result.txt", data)).status_code == 200
    manifest = {
        "job_id": job_id,
        "miner_id": miner.miner_id,
        "files": [{"path": bad_path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}],
    }
    body = {"lease_id": lease_id, "manifest": manifest, "signature": sign(miner.key, manifest)}
    refused = await miner.call("complete", job_id, body)
    assert refused.status_code == 422, refused.text
    await assert_untouched(world, job_id, headers)


async def test_sizes_and_hashes_that_disagree_with_the_bytes(world: World) -> None:
    job_id, headers, miner, lease_id = await world.running()
    data = b"x" * 100
    assert (await miner.upload(job_id, lease_id, "artifacts/a.bin", data)).status_code == 200
    for size, sha256 in ((99, hashlib.sha256(data).hexdigest()), (100, hashlib.sha256(b"y" * 100).hexdigest())):
        entry = {"path": "artifacts/a.bin", "size": size, "sha256": sha256}
        manifest = {"job_id": job_id, "miner_id": miner.miner_id, "files": [entry]}
        body = {"lease_id": lease_id, "manifest": manifest, "signature": sign(miner.key, manifest)}
        refused = await miner.call("complete", job_id, body)
        assert refused.status_code == 422 and "artifacts/a.bin" in refused.json()["message"]
    listed_not_uploaded = {
        "job_id": job_id,
        "miner_id": miner.miner_id,
        "files": [{"path": "artifacts/b.bin", "size": 1, "sha256": "0" * 64}],
    }
    body = {"lease_id": lease_id, "manifest": listed_not_uploaded, "signature": sign(miner.key, listed_not_uploaded)}
    assert (await miner.call("complete", job_id, body)).status_code == 422
    await assert_untouched(world, job_id, headers)


async def test_a_manifest_signed_by_another_key_is_refused(world: World) -> None:
    job_id, headers, miner, lease_id = await world.running()
    data = b"ok"
    assert (await miner.upload(job_id, lease_id, "result.txt", data)).status_code == 200
    entry = {"path": "result.txt", "size": 2, "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {"job_id": job_id, "miner_id": miner.miner_id, "files": [entry]}
    body = {"lease_id": lease_id, "manifest": manifest, "signature": sign(Ed25519PrivateKey.generate(), manifest)}
    assert (await miner.call("complete", job_id, body)).status_code == 422
    await assert_untouched(world, job_id, headers)


async def assert_untouched(world: World, job_id: str, headers: dict[str, str]) -> None:
    job = (await world.http.get(f"/v1/jobs/{job_id}", headers=headers)).json()
    assert job["status"] == "running" and job["results"] == "none"
    assert (await stored_rows(world, job_id))[1] == 0
    assert (await world.http.get(f"/v1/jobs/{job_id}/download", headers=headers)).status_code == 409
    assert (await world.http.get(f"/v1/jobs/{job_id}/receipt", headers=headers)).status_code == 409


async def test_another_tenant_cannot_touch_shares_or_results(world: World) -> None:
    done = await world.finished({"result.txt": b"mine"})
    made = await world.http.post(f"/v1/jobs/{done.job_id}/shares", json={}, headers=done.headers)
    share_id = made.json()["share_id"]
    mallory = await world.client("mallory")
    revoke = await world.http.delete(f"/v1/jobs/{done.job_id}/shares/{share_id}", headers=mallory)
    assert revoke.status_code == 404
    delete = await world.http.delete(f"/v1/jobs/{done.job_id}/results", headers=mallory)
    assert delete.status_code == 404
    listed = (await world.http.get(f"/v1/jobs/{done.job_id}/shares", headers=done.headers)).json()["shares"]
    assert [s["state"] for s in listed] == ["active"]
    assert (await world.http.get(f"/v1/shared/{made.json()['token']}")).status_code == 200
