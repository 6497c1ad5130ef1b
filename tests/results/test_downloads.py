"""Downloads: the zip (exact length, ETag, Range, HEAD, If-None-Match), single files and the checksum file,
partial packages of failed and canceled jobs, and what a job without downloadable results answers."""

from __future__ import annotations

import hashlib
import io
import subprocess
import warnings
import zipfile
import zlib
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Connection, Update, update

from aitbc.api.app import create_app
from aitbc.domain.package import parse_checksum_file
from aitbc.settings import Settings
from aitbc.storage.sql.tables import result_files
from tests.results.flow import World, package_files


async def test_zip_holds_every_file_under_the_job_folder(world: World, tmp_path: Path) -> None:
    done = await world.finished(package_files())
    response = await world.http.get(f"/v1/jobs/{done.job_id}/download", headers=done.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["etag"].startswith('"')
    assert f'filename="{done.job_id}.zip"' in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    names = archive.namelist()
    assert sorted(names) == sorted([f"{done.job_id}/{path}" for path in done.files] + [f"{done.job_id}/output.sha256"])
    for path, data in done.files.items():
        assert archive.read(f"{done.job_id}/{path}") == data
    listed = parse_checksum_file(archive.read(f"{done.job_id}/output.sha256").decode())
    assert listed == {path: hashlib.sha256(data).hexdigest() for path, data in done.files.items()}
    # The tools a user has accept it too.
    zip_path = tmp_path / "package.zip"
    zip_path.write_bytes(response.content)
    tested = subprocess.run(["unzip", "-t", str(zip_path)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    subprocess.run(["unzip", "-q", str(zip_path), "-d", str(tmp_path / "out")], check=True)
    checked = subprocess.run(
        ["sha256sum", "-c", "output.sha256"], cwd=tmp_path / "out" / done.job_id, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": OK") == len(done.files)


async def test_results_listing_matches_the_zip(world: World) -> None:
    done = await world.finished(package_files())
    listing = (await world.http.get(f"/v1/jobs/{done.job_id}/results", headers=done.headers)).json()
    assert listing["results"] == "available" and listing["partial"] is False
    assert {f["path"]: f["size"] for f in listing["files"]} == {p: len(d) for p, d in done.files.items()}
    assert listing["total_bytes"] == sum(len(d) for d in done.files.values())
    head = await world.http.head(f"/v1/jobs/{done.job_id}/download", headers=done.headers)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == listing["zip_bytes"]
    assert listing["results_expire_at"].endswith("Z")


async def test_ranges_resume_the_zip_byte_for_byte(world: World) -> None:
    done = await world.finished(package_files(artifact_size=3 * 1024 * 1024 + 17))
    url = f"/v1/jobs/{done.job_id}/download"
    whole = await world.http.get(url, headers=done.headers)
    size, etag = len(whole.content), whole.headers["etag"]
    cut = size // 3
    first = await world.http.get(url, headers={**done.headers, "Range": f"bytes=0-{cut - 1}"})
    rest = await world.http.get(url, headers={**done.headers, "Range": f"bytes={cut}-", "If-Range": etag})
    assert first.status_code == 206 and rest.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-{cut - 1}/{size}"
    assert rest.headers["content-range"] == f"bytes {cut}-{size - 1}/{size}"
    assert int(rest.headers["content-length"]) == size - cut
    assert hashlib.sha256(first.content + rest.content).digest() == hashlib.sha256(whole.content).digest()
    middle = await world.http.get(url, headers={**done.headers, "Range": "bytes=1000-1999"})
    assert middle.content == whole.content[1000:2000]
    suffix = await world.http.get(url, headers={**done.headers, "Range": "bytes=-22"})
    assert suffix.status_code == 206 and suffix.content == whole.content[-22:]
    beyond = await world.http.get(url, headers={**done.headers, "Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    backwards = await world.http.get(url, headers={**done.headers, "Range": "bytes=50-10"})
    assert backwards.status_code == 200 and backwards.content == whole.content
    past_end = await world.http.get(url, headers={**done.headers, "Range": f"bytes={size - 5}-{size + 100}"})
    assert past_end.status_code == 206 and past_end.content == whole.content[-5:]
    stale = await world.http.get(url, headers={**done.headers, "Range": "bytes=10-", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == whole.content
    cached = await world.http.get(url, headers={**done.headers, "If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    listed = await world.http.get(url, headers={**done.headers, "If-None-Match": f'"old", W/{etag}'})
    assert listed.status_code == 304
    other = await world.http.get(url, headers={**done.headers, "If-None-Match": '"old"'})
    assert other.status_code == 200
    again = await world.http.get(url, headers=done.headers)
    assert again.headers["etag"] == etag and again.content == whole.content


async def test_single_files_and_the_checksum_file(world: World) -> None:
    done = await world.finished(package_files(artifact_size=70_000))
    for path, data in done.files.items():
        response = await world.http.get(f"/v1/jobs/{done.job_id}/files/{path}", headers=done.headers)
        assert response.status_code == 200, path
        assert response.content == data
        assert response.headers["x-sha256"] == hashlib.sha256(data).hexdigest()
        assert response.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    named = await world.http.get(f'/v1/jobs/{done.job_id}/files/artifacts/名前 "quoted"; x.txt', headers=done.headers)
    disposition = named.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="__ _quoted__ x.txt"')
    assert disposition.endswith("filename*=UTF-8''" + quote('名前 "quoted"; x.txt', safe=""))
    part = await world.http.get(
        f"/v1/jobs/{done.job_id}/files/artifacts/model.bin", headers={**done.headers, "Range": "bytes=100-199"}
    )
    assert part.status_code == 206 and part.content == done.files["artifacts/model.bin"][100:200]
    log = await world.http.get(f"/v1/jobs/{done.job_id}/files/logs/stdout.log", headers=done.headers)
    assert log.headers["content-type"].startswith("text/plain")
    checksums = await world.http.get(f"/v1/jobs/{done.job_id}/files/output.sha256", headers=done.headers)
    assert checksums.status_code == 200
    assert parse_checksum_file(checksums.text) == {p: hashlib.sha256(d).hexdigest() for p, d in done.files.items()}
    missing = await world.http.get(f"/v1/jobs/{done.job_id}/files/artifacts/none.bin", headers=done.headers)
    assert missing.status_code == 404
    sneaky = await world.http.get(f"/v1/jobs/{done.job_id}/files/artifacts/%2e%2e/result.txt", headers=done.headers)
    assert sneaky.status_code == 422


@pytest.mark.parametrize("cancel", [False, True], ids=["failed", "canceled"])
async def test_partial_packages_download(world: World, cancel: bool) -> None:
    files = {"logs/stdout.log": b"started\n", "logs/stderr.log": b"boom\n", "artifacts/step-1.bin": b"x" * 100}
    verb = "complete" if cancel else "fail"
    extra = {} if cancel else {"reason": "runtime_error", "message": "boom"}
    done = await world.finished(files, verb=verb, cancel=cancel, **extra)
    job = (await world.http.get(f"/v1/jobs/{done.job_id}", headers=done.headers)).json()
    assert job["status"] == ("canceled" if cancel else "failed")
    listing = (await world.http.get(f"/v1/jobs/{done.job_id}/results", headers=done.headers)).json()
    assert listing["partial"] is True
    response = await world.http.get(f"/v1/jobs/{done.job_id}/download", headers=done.headers)
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.read(f"{done.job_id}/logs/stderr.log") == b"boom\n"
    assert archive.testzip() is None


async def test_jobs_without_downloadable_results(world: World) -> None:
    job_id, headers, miner, lease_id = await world.running()
    running = await world.http.get(f"/v1/jobs/{job_id}/download", headers=headers)
    assert running.status_code == 409 and "running" in running.json()["message"]
    failed = await miner.call("fail", job_id, {"lease_id": lease_id, "reason": "runtime_error", "message": "x"})
    assert failed.status_code == 200, failed.text
    nothing = await world.http.get(f"/v1/jobs/{job_id}/download", headers=headers)
    assert nothing.status_code == 404 and "no results" in nothing.json()["message"]
    assert (await world.http.get(f"/v1/jobs/{job_id}/receipt", headers=headers)).status_code == 404


async def test_another_tenants_job_is_not_found(world: World) -> None:
    done = await world.finished(package_files())
    mallory = await world.client("mallory")
    base = f"/v1/jobs/{done.job_id}"
    for method, path in [
        ("GET", "/results"),
        ("GET", "/download"),
        ("HEAD", "/download"),
        ("GET", "/files/result.txt"),
        ("GET", "/files/output.sha256"),
        ("GET", "/receipt"),
        ("GET", "/logs"),
        ("GET", "/shares"),
        ("POST", "/shares"),
        ("DELETE", "/shares"),
        ("DELETE", "/results"),
    ]:
        body = {} if method == "POST" else None
        response = await world.http.request(method, base + path, headers=mallory, json=body)
        assert response.status_code == 404, (method, path, response.status_code)
    intact = await world.http.get(f"{base}/download", headers=done.headers)
    assert intact.status_code == 200
    assert (await world.http.get(f"{base}/shares", headers=done.headers)).json()["shares"] == []
    no_key = await world.http.get(f"{base}/download")
    assert no_key.status_code == 401


def test_the_openapi_document_describes_the_results_routes(settings: Settings) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = create_app(settings).openapi()["paths"]
    assert {"get", "head"} <= set(paths["/v1/jobs/{job_id}/download"])
    assert {"get", "delete"} <= set(paths["/v1/jobs/{job_id}/results"])
    for path in ("/v1/jobs/{job_id}/files/{path}", "/v1/shared/{token}", "/.well-known/aitbc-coordinator.json"):
        assert path in paths


async def test_job_views_carry_the_expiry(world: World) -> None:
    done = await world.finished(package_files())
    pending_id, _ = await world.submit()
    assert world.coordinator is not None
    jobs = [await world.coordinator.job_store.get_job(job_id) for job_id in (done.job_id, pending_id)]
    views = await world.coordinator.job_views.views([job for job in jobs if job is not None])
    listing = (await world.http.get(f"/v1/jobs/{done.job_id}/results", headers=done.headers)).json()
    assert views[0].model_dump(mode="json")["results_expire_at"] == listing["results_expire_at"]
    assert views[1].results_expire_at is None


async def test_the_zip_carries_the_crc32_kept_since_upload(world: World) -> None:
    """Each file's CRC-32 is computed while it uploads and kept with its record, and the zip's headers take it
    from there, so a download reads each blob once; a record without one (made before CRC-32s were kept) gets
    it computed on its first zip download, and kept."""
    done = await world.finished(package_files(artifact_size=200_000))
    coordinator = world.coordinator
    assert coordinator is not None
    result = await coordinator.job_store.get_result(done.job_id)
    assert result is not None
    expected = {path: zlib.crc32(data) for path, data in done.files.items()}

    async def recorded() -> dict[str, int | None]:
        return {f.path: f.crc32 for f in await coordinator.job_store.result_files(done.job_id, result.lease_id)}

    async def zip_crc32s() -> dict[str, int]:
        response = await world.http.get(f"/v1/jobs/{done.job_id}/download", headers=done.headers)
        assert response.status_code == 200
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        return {info.filename.removeprefix(f"{done.job_id}/"): info.CRC for info in archive.infolist()}

    assert await recorded() == expected, "kept before any download"
    checksums = zlib.crc32(
        (await world.http.get(f"/v1/jobs/{done.job_id}/files/output.sha256", headers=done.headers)).content
    )
    assert await zip_crc32s() == {**expected, "output.sha256": checksums}

    def one(path: str) -> Update:
        return update(result_files).where(result_files.c.job_id == done.job_id, result_files.c.path == path)

    def rewrite(connection: Connection) -> None:
        connection.execute(one("result.txt").values(crc32=12345))  # a record that says otherwise shows through
        connection.execute(one("artifacts/model.bin").values(crc32=None))  # as recorded before 0008

    await coordinator.database.write(rewrite)
    crc32s = await zip_crc32s()
    assert crc32s["result.txt"] == 12345, "the zip takes the recorded value, it does not compute its own"
    assert crc32s["artifacts/model.bin"] == expected["artifacts/model.bin"]
    assert (await recorded())["artifacts/model.bin"] == expected["artifacts/model.bin"], "computed once, kept"
