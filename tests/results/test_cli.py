"""The results commands against a real coordinator on a socket (uvicorn in a thread), as a user runs them:
download (folder, checksums, zip), verify (pinning, tampered files and receipts), share, delete, logs, and
the SDK's resumable downloads."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aitbc.cli.main import app
from aitbc.domain.errors import InvalidInput
from aitbc.sdk.client import Client
from aitbc.sdk.config import read_profile, write_profile
from aitbc.sdk.downloads import part_of, zip_path
from aitbc.sdk.packages import inside
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.results.flow import Finished, World, package_files
from tests.support.served import served_in_thread

AITBC = str(Path(sys.executable).with_name("aitbc"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False)


@pytest.fixture
async def served(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
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


async def test_download_checksum_and_verify(served: World, tmp_path: Path) -> None:
    done = await served.finished(package_files(artifact_size=2_000_000))
    out = tmp_path / "results"
    code, output = aitbc("client", "download", "--job-id", done.job_id, "--output", str(out), "--checksum")
    assert code == 0, output
    folder = out / done.job_id
    for path, data in done.files.items():
        assert (folder / path).read_bytes() == data
    checked = subprocess.run(["sha256sum", "-c", "output.sha256"], cwd=folder, capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.count(": OK") == len(done.files), checked.stdout
    assert (out / f"{done.job_id}.receipt.json").is_file()
    assert not list(out.rglob("*.part"))

    code, output = aitbc("client", "verify", "--job-id", done.job_id, "--path", str(folder))
    assert code == 0, output
    assert "pinned" in output and "Verified" in output
    pinned = read_profile()["coordinator_keys"]
    assert list(pinned) == [os.environ["AITBC_URL"]]

    artifact = folder / "artifacts" / "model.bin"
    original = artifact.read_bytes()
    artifact.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    code, output = aitbc("client", "verify", "--job-id", done.job_id, "--path", str(folder))
    assert code == 1
    assert "file artifacts/model.bin" in output and "FAILED" in output
    artifact.write_bytes(original)

    receipt_path = out / f"{done.job_id}.receipt.json"
    receipt = json.loads(receipt_path.read_text())
    good = receipt["signature"]
    receipt["signature"] = ("B" if good[0] != "B" else "C") + good[1:]
    receipt_path.write_text(json.dumps(receipt))
    code, output = aitbc("client", "verify", "--job-id", done.job_id, "--path", str(folder))
    assert code == 1 and "coordinator signature" in output.split("FAILED")[1]
    receipt["signature"] = good
    receipt["receipt"]["total_bytes"] += 1
    receipt_path.write_text(json.dumps(receipt))
    assert aitbc("client", "verify", "--job-id", done.job_id, "--path", str(folder))[0] == 1
    receipt_path.unlink()
    # Without a saved receipt it fetches the coordinator's; offline it needs one.
    assert aitbc("client", "verify", "--job-id", done.job_id, "--path", str(folder))[0] == 0
    assert aitbc("client", "verify", "--job-id", done.job_id, "--path", str(folder), "--offline")[0] != 0
    code, output = aitbc("client", "verify", "--job-id", done.job_id, "--json")
    assert code == 0 and json.loads(output)["ok"] is True


async def test_verify_offline_and_a_changed_coordinator_key(served: World, tmp_path: Path) -> None:
    done = await served.finished(package_files())
    out = tmp_path / "results"
    assert aitbc("client", "download", "--job-id", done.job_id, "--output", str(out))[0] == 0
    assert aitbc("client", "verify", "--job-id", done.job_id, "--path", str(out))[0] == 0
    code, output = aitbc("client", "verify", "--job-id", done.job_id, "--path", str(out), "--offline")
    assert code == 0, output
    url = os.environ["AITBC_URL"]
    pins = read_profile()["coordinator_keys"]
    real = pins[url]
    write_profile({"coordinator_keys": {url: {**real, "public_key": "A" * 43 + "=", "key_id": "0123456789abcdef"}}})
    code, output = aitbc("client", "verify", "--job-id", done.job_id, "--path", str(out))
    assert code == 1
    assert "KEY HAS CHANGED" in output and "coordinator signature" in output.split("FAILED")[1]
    code, output = aitbc("client", "verify", "--job-id", done.job_id, "--path", str(out), "--trust-new-key")
    assert code == 0, output
    assert read_profile()["coordinator_keys"][url]["public_key"] == real["public_key"]


async def test_zip_format(served: World, tmp_path: Path) -> None:
    done = await served.finished(package_files())
    out = tmp_path / "zips"
    code, output = aitbc("client", "download", "--job-id", done.job_id, "--output", str(out), "--format", "zip")
    assert code == 0, output
    archive = out / f"{done.job_id}.zip"
    tested = subprocess.run(["unzip", "-t", str(archive)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout
    with zipfile.ZipFile(archive) as opened:
        assert opened.read(f"{done.job_id}/result.txt") == done.files["result.txt"]
    assert aitbc("client", "verify", "--job-id", done.job_id, "--path", str(archive))[0] == 0


async def test_share_with_curl_then_revoke(served: World) -> None:
    done = await served.finished(package_files())
    code, output = aitbc("client", "share", "--job-id", done.job_id, "--expires", "2h")
    assert code == 0, output
    link = next(line for line in output.splitlines() if "/v1/shared/" in line).strip()
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", link]
    fetched = subprocess.run(curl, capture_output=True, text=True)
    assert fetched.stdout == "200"
    code, output = aitbc("client", "share", "--job-id", done.job_id, "--list", "--json")
    shares = json.loads(output)["shares"]
    assert [(s["state"], s["download_count"]) for s in shares] == [("active", 1)]
    assert aitbc("client", "share", "--job-id", done.job_id, "--revoke", shares[0]["share_id"])[0] == 0
    refused = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", link], capture_output=True, text=True)
    assert refused.stdout.endswith("410") and "revoked" in refused.stdout
    assert aitbc("client", "share", "--job-id", done.job_id, "--expires", "7x")[0] == 1
    assert aitbc("client", "share", "--job-id", done.job_id, "--revoke-all", "--list")[0] == 1
    code, output = aitbc("client", "share", "--job-id", done.job_id, "--revoke-all", "--json")
    assert code == 0 and json.loads(output)["revoked"] == 0


async def test_delete_needs_confirmation(served: World, tmp_path: Path) -> None:
    done = await served.finished(package_files())
    code, output = aitbc("client", "delete", "--job-id", done.job_id)
    assert code == 2 and "--force" in output
    assert (await served.http.get(f"/v1/jobs/{done.job_id}/download", headers=done.headers)).status_code == 200
    code, output = aitbc("client", "delete", "--job-id", done.job_id, "--force", "--json")
    assert code == 0 and json.loads(output)["results"] == "deleted"
    code, output = aitbc("client", "download", "--job-id", done.job_id, "--output", str(tmp_path))
    assert code == 1 and "deleted" in output
    code, output = aitbc("client", "get", "--job-id", done.job_id, "--json")
    assert json.loads(output)["results"] == "deleted"


async def test_logs_live_then_from_the_package(served: World) -> None:
    job_id, _headers, miner, lease_id = await served.running()
    lines = [{"stream": "stdout", "line": "step one"}, {"stream": "stderr", "line": "warning: two"}]
    assert (await miner.call("logs", job_id, {"lease_id": lease_id, "lines": lines})).status_code == 200
    code, output = aitbc("client", "logs", "--job-id", job_id)
    assert code == 0 and "step one" in output and "warning: two" in output
    follower = subprocess.Popen(
        [AITBC, "client", "logs", "--job-id", job_id, "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().strip().endswith("Z stdout step one")  # <time> <stream> <text>
        assert follower.stdout.readline().strip().endswith("Z stderr warning: two")  # interleaved, in order
        later = [{"stream": "stdout", "line": "step three"}]
        assert (await miner.call("logs", job_id, {"lease_id": lease_id, "lines": later})).status_code == 200
        assert follower.stdout.readline().strip().endswith("Z stdout step three")
        files = {"logs/stdout.log": b"step one\nstep three\nall done\n", "logs/stderr.log": b"warning: two\n"}
        assert (await miner.finish(job_id, lease_id, files)).status_code == 200
        _, stderr = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0, stderr
    code, output = aitbc("client", "logs", "--job-id", job_id)
    assert code == 0 and output.splitlines()[:3] == ["step one", "step three", "all done"]


async def test_the_sdk_resumes_and_recovers_downloads(served: World, tmp_path: Path) -> None:
    done: Finished = await served.finished(package_files(artifact_size=3_000_000))
    with Client() as api:
        whole = tmp_path / "whole.zip"
        first = api.download_zip(done.job_id, whole)
        assert first.resumed_from == 0 and first.size == whole.stat().st_size
        resumed = tmp_path / "resumed.zip"
        part_of(resumed).write_bytes(whole.read_bytes()[:1_234_567])
        seen: list[int] = []
        second = api.download(zip_path(done.job_id), resumed, progress=seen.append)
        assert second.resumed_from == 1_234_567 and seen[0] > 1_234_567
        assert second.sha256 == first.sha256 == hashlib.sha256(whole.read_bytes()).hexdigest()
        # A stale partial file with the wrong bytes is caught by the sha256 and fetched again whole.
        data = done.files["artifacts/model.bin"]
        target = tmp_path / "model.bin"
        part_of(target).write_bytes(b"\xff" * 1000)
        fixed = api.download_file(done.job_id, "artifacts/model.bin", target, hashlib.sha256(data).hexdigest())
        assert target.read_bytes() == data and fixed.sha256 == hashlib.sha256(data).hexdigest()


async def test_logs_page_through_many_events(served: World) -> None:
    job_id, headers, miner, lease_id = await served.running()
    for batch in range(4):
        lines = [{"stream": "stdout", "line": f"batch {batch} line {n}"} for n in range(3)]
        assert (await miner.call("logs", job_id, {"lease_id": lease_id, "lines": lines})).status_code == 200
    first = (await served.http.get(f"/v1/jobs/{job_id}/logs", params={"limit": 5}, headers=headers)).json()
    assert first["more"] is True and len(first["lines"]) == 6, "whole events, about `limit` lines"
    rest = await served.http.get(
        f"/v1/jobs/{job_id}/logs", params={"limit": 5, "after": first["last_seq"]}, headers=headers
    )
    assert [line["line"] for line in rest.json()["lines"]] == [f"batch {b} line {n}" for b in (2, 3) for n in range(3)]
    assert rest.json()["more"] is False
    code, output = aitbc("client", "logs", "--job-id", job_id, "--raw")
    assert code == 0 and output.splitlines() == [f"batch {b} line {n}" for b in range(4) for n in range(3)]


def test_the_cli_never_writes_outside_the_package_folder(tmp_path: Path) -> None:
    root = tmp_path / "results" / "job_x"
    root.mkdir(parents=True)
    assert inside(root, "artifacts/a/b.bin") == root / "artifacts" / "a" / "b.bin"
    for hostile in ("../evil", "artifacts/../../evil", "/etc/passwd", "artifacts\\..\\evil", "evil.txt"):
        with pytest.raises(InvalidInput):
            inside(root, hostile)
    (tmp_path / "elsewhere").mkdir()
    (root / "artifacts").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="symbolic link"):
        inside(root, "artifacts/planted.bin")
