"""`AsyncClient` against a real coordinator on a socket: the same surface as `Client` (results, whole-package
download and verification with key pinning, admin, billing, history, export), and the same downloads (resume,
a stale partial file fetched again whole)."""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aitbc.domain.errors import InvalidInput
from aitbc.sdk.calls import SubmitOptions
from aitbc.sdk.client import AsyncClient, Client
from aitbc.sdk.config import read_profile
from aitbc.sdk.downloads import part_of, zip_path
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.results.flow import World, package_files
from tests.support.served import served_in_thread


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False)
    async with coordinator_session(settings) as coordinator:
        admin, user = await coordinator.accounts.bootstrap()
    with served_in_thread(settings) as url:
        monkeypatch.setenv("AITBC_URL", url)
        monkeypatch.setenv("AITBC_API_KEY", user.secret)
        monkeypatch.setenv("AITBC_CONFIG", str(tmp_path / "profile.json"))
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            world = World(http, admin_key=admin.secret)
            world.keys["alice"] = user.secret
            yield world


def test_both_clients_have_the_same_methods() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    blocking, coroutines = public(Client), public(AsyncClient)
    assert set(blocking) - {"close"} == set(coroutines) - {"aclose"}
    for name, signature in blocking.items():
        if name != "close":
            assert list(signature.parameters) == list(coroutines[name].parameters), name


async def test_downloads_resume_and_a_stale_partial_file_is_fetched_again(served: World, tmp_path: Path) -> None:
    done = await served.finished(package_files(artifact_size=3_000_000))
    async with AsyncClient() as api:
        whole = tmp_path / "whole.zip"
        first = await api.download_zip(done.job_id, whole)
        assert first.resumed_from == 0 and first.size == whole.stat().st_size
        resumed = tmp_path / "resumed.zip"
        part_of(resumed).write_bytes(whole.read_bytes()[:1_234_567])
        seen: list[int] = []
        second = await api.download(zip_path(done.job_id), resumed, progress=seen.append)
        assert second.resumed_from == 1_234_567 and seen[0] > 1_234_567
        assert second.sha256 == first.sha256 == hashlib.sha256(whole.read_bytes()).hexdigest()
        data = done.files["artifacts/model.bin"]
        target = tmp_path / "model.bin"
        part_of(target).write_bytes(b"\xff" * 1000)
        fixed = await api.download_file(done.job_id, "artifacts/model.bin", target, hashlib.sha256(data).hexdigest())
        assert target.read_bytes() == data and fixed.sha256 == hashlib.sha256(data).hexdigest()
        assert fixed.resumed_from == 0 and not part_of(target).exists()


async def test_a_package_downloads_verifies_and_pins_the_coordinator_key(served: World, tmp_path: Path) -> None:
    done = await served.finished(package_files())
    out = tmp_path / "results"
    async with AsyncClient() as api:
        totals: list[tuple[int, int]] = []
        package = await api.download_results(
            done.job_id, out, checksum=True, progress=lambda done, total: totals.append((done, total))
        )
        assert package.path == out / done.job_id and package.files == len(done.files)
        assert totals[-1][0] == totals[-1][1]  # the zip's bytes: the whole package came in one request
        assert package.bytes == sum(len(data) for data in done.files.values())
        for path, data in done.files.items():
            assert (package.path / path).read_bytes() == data
        assert sorted(p.name for p in out.iterdir()) == [done.job_id, f"{done.job_id}.receipt.json"]
        file_by_file = await api.download_results(
            done.job_id, tmp_path / "per-file", per_file=True, progress=lambda done, total: totals.append((done, total))
        )
        assert totals[-1][0] == totals[-1][1] == file_by_file.bytes == package.bytes
        for path, data in done.files.items():
            assert (file_by_file.path / path).read_bytes() == data
        assert package.checksum_file is not None and package.checksum_file.is_file()
        assert package.receipt_file == out / f"{done.job_id}.receipt.json"

        checked = await api.verify(done.job_id, path=package.path)
        assert checked.ok, checked.failed
        assert "pinned" in checked.checks[0].detail and checked.key_change is None
        assert list(read_profile()["coordinator_keys"]) == [api.url]
        streamed = await api.verify(done.job_id)
        assert streamed.ok and "matches" in streamed.checks[0].detail

        (package.path / "result.txt").write_bytes(b"forged\n")
        tampered = await api.verify(done.job_id, path=package.path)
        assert [check.name for check in tampered.failed] == ["file result.txt"]

        archive = await api.download_results(done.job_id, tmp_path / "zips", format="zip")
        assert archive.path.name == f"{done.job_id}.zip"
        assert (await api.verify(done.job_id, path=archive.path)).ok
        with pytest.raises(InvalidInput):
            await api.download_results(done.job_id, out, format="tar")


async def test_admin_billing_history_and_export(served: World) -> None:
    async with AsyncClient(api_key=served.admin_key) as admin:
        created = await admin.create_key("bob", "client", "pro")
        assert created.api_key.startswith("aitbc_")
        assert [key.key_id for key in await admin.list_keys("bob")] == [created.key_id]
        assert "bob" in [account.name for account in await admin.list_accounts()]
        assert (await admin.set_plan("bob", "enterprise")).plan == "enterprise"
        granted = await admin.grant_credits("bob", "5", "a test grant")
        assert granted.account == "bob"
    async with AsyncClient(api_key=created.api_key) as bob:
        job = await bob.submit(
            type="command", model=None, input="echo hi", requirements={"gpu_count": 1}, priority="high"
        )
        assert job.priority.value == "high" and job.type == "command"
        canceled = await bob.cancel(job.job_id)
        assert canceled.outcome == "canceled"
        again = await bob.retry(job.job_id)
        assert again.retry_of == job.job_id
        assert [event.status.value for event in await bob.timeline(job.job_id)][-1] == "canceled"
        assert [found.job_id async for found in bob.iter_jobs(limit=1)] == [again.job_id, job.job_id]
        assert (await bob.balance()).account == "bob"
        assert "a test grant" in [entry.memo async for entry in bob.iter_ledger()]
        assert (await bob.stats()).total_jobs == 2
        exported = b"".join([chunk async for chunk in bob.export("json")])
        assert {row["job_id"] for row in json.loads(exported)} == {job.job_id, again.job_id}
        rows = list(csv.DictReader(io.StringIO(b"".join([c async for c in bob.export("csv")]).decode())))
        assert len(rows) == 2
    async with AsyncClient(api_key=served.admin_key) as admin:
        assert (await admin.revoke_key(created.key_id)).revoked_at is not None


def test_submit_takes_the_body_field_names(served: World) -> None:
    with Client() as api:
        job = api.submit(model="gpt2", input="hello", requirements={"gpu_type": "a100"}, timeout_seconds=60)
    assert job.model == "gpt2" and job.type == "text-generation" and job.timeout_seconds == 60
    assert job.requirements.gpu_type == "a100"
    with Client() as api, pytest.raises(TypeError, match="model_name"):
        api.submit(model_name="gpt2")  # type: ignore[call-arg]


async def test_submit_many_on_both_clients_and_a_refused_item_named(served: World) -> None:
    jobs: list[SubmitOptions] = [
        {"type": "command", "input": "echo 1", "idempotency_key": "batch-1"},
        {"model": "gpt2", "input": "hello", "timeout_seconds": 60},
    ]
    with Client() as api:
        made = api.submit_many(jobs)
    assert [(each.index, each.created) for each in made.jobs] == [(0, True), (1, True)]
    assert made.jobs[1].job.type == "text-generation" and made.jobs[1].job.timeout_seconds == 60
    async with AsyncClient() as api:
        replay = await api.submit_many(jobs[:1])
        assert replay.jobs[0].job.job_id == made.jobs[0].job.job_id and not replay.jobs[0].created
        with pytest.raises(InvalidInput) as refused:
            await api.submit_many([{"type": "command"}, {"type": "command", "timeout_seconds": 0}])
        assert refused.value.item == 1 and "jobs.1.timeout_seconds" in refused.value.message
        assert (await api.list()).total == 2
    with Client() as api, pytest.raises(TypeError, match="job 0 has an unexpected field 'model_name'"):
        api.submit_many([{"model_name": "gpt2"}])  # type: ignore[typeddict-unknown-key]
