"""The `command` runtime through the real agent and app: limits, a scrubbed environment, input files,
timeouts, and progress and logs sent in batches rather than line by line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitbc.domain.job import split_stderr_tail
from aitbc.miner.config import JobLimits, MinerConfig
from aitbc.miner.runtimes.command import CommandRuntime
from aitbc.miner.runtimes.registry import build_runtimes
from aitbc.miner.sandboxed_run import Isolation
from tests.miner.inprocess import InProcess, in_process


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


def command(stack: InProcess, name: str = "in-process", **options: object) -> dict[str, CommandRuntime]:
    """The command runtime as `aitbc miner run` builds it, for the in-process miner called `name`; `options`
    are JobLimits fields, or MinerConfig fields (job_network, command_user)."""
    limits = {key: value for key, value in options.items() if key in JobLimits.__dataclass_fields__}
    settings = {"work_dir": stack.root / "miners" / name}
    settings.update({key: value for key, value in options.items() if key not in limits})
    config = MinerConfig(
        url="http://unused",
        api_key="unused",
        name=name,
        job_limits=JobLimits(**limits),  # type: ignore[arg-type]
        **settings,  # type: ignore[arg-type]
    )
    return {"command": CommandRuntime(Isolation.for_miner(config), kill_grace_seconds=0.5)}


async def run_one(stack: InProcess, script: object, runtimes: dict[str, CommandRuntime] | None = None, **job: object):  # type: ignore[no-untyped-def]
    job_id = await stack.submit(type="command", input=script, **job)
    await stack.drain(runtimes or command(stack))
    found = await stack.job(job_id)
    _, files = await stack.package(job_id)
    return found, files


async def test_the_environment_is_scrubbed(stack: InProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITBC_PROBE_SECRET", "must-not-leak")
    job, files = await run_one(stack, 'env; echo "cwd=$(pwd)"', params={"env": {"GREETING": "hi"}})
    assert job["status"] == "completed"
    seen = dict(line.split("=", 1) for line in files["result.txt"].decode().splitlines() if "=" in line)
    assert "AITBC_PROBE_SECRET" not in seen
    assert stack.miner_key not in files["result.txt"].decode()
    assert seen["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert seen["GREETING"] == "hi"
    assert seen["AITBC_JOB_ID"] == job["job_id"]
    assert seen["HOME"] == seen["cwd"] == seen["AITBC_WORK_DIR"] == "/job/work"
    assert seen["AITBC_RESULT_FILE"] == "/job/output/result.txt"
    assert seen["AITBC_ARTIFACTS_DIR"] == "/job/output/artifacts"
    assert seen["TMPDIR"] == "/tmp"
    assert set(seen) - {"GREETING", "cwd", "PWD", "SHLVL", "_", "OLDPWD"} <= {
        "PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "AITBC_JOB_ID", "AITBC_ATTEMPT", "AITBC_WORK_DIR",
        "AITBC_RESULT_FILE", "AITBC_ARTIFACTS_DIR", "AITBC_PARAMS",
    }  # fmt: skip


async def test_rlimits_are_set_inside_the_sandbox(stack: InProcess) -> None:
    limits = command(stack, memory_mb=64, disk_mb=1, open_files=64, cpu_seconds=7)
    job, files = await run_one(stack, "ulimit -n; ulimit -f; ulimit -t; ulimit -Hn", limits)
    assert job["status"] == "completed"
    assert files["result.txt"].decode().split() == ["64", "1024", "7", "64"]

    job, files = await run_one(stack, 'head -c 5000000 /dev/zero > "$AITBC_ARTIFACTS_DIR/big"', limits)
    assert job["status"] == "failed" and job["failure_reason"] == "runtime_error"
    assert split_stderr_tail(job["error"])[0] == "the job hit its limit of 1 MiB of disk"
    assert len(files["artifacts/big"]) <= 1024 * 1024  # cut at the limit


async def test_a_job_past_its_timeout_is_killed_and_fails_as_timeout(stack: InProcess) -> None:
    job, files = await run_one(stack, "echo started; sleep 60", timeout_seconds=1)
    assert job["status"] == "failed"
    assert job["failure_reason"] == "timeout"
    assert files["logs/stdout.log"] == b"started\n"
    assert json.loads(files["output.json"])["failure_reason"] == "timeout"


async def test_input_files_land_in_the_working_folder(stack: InProcess, tmp_path: Path) -> None:
    script = {"script": "cat data.txt; wc -l < rows.csv", "files": {"data.txt": "hello", "rows.csv": "a\nb\n"}}
    job, files = await run_one(stack, script)
    assert job["status"] == "completed"
    assert files["result.txt"] == b"hello2\n"

    uploaded = tmp_path / "job.sh"
    uploaded.write_text('echo "I am $(basename "$AITBC_INPUT_FILE")"\n')
    job_id = await stack.submit(type="command", input_file_id=await stack.upload(uploaded))
    await stack.drain(command(stack))
    assert (await stack.job(job_id))["status"] == "completed"
    assert (await stack.package(job_id))[1]["result.txt"] == b"I am job.sh\n"

    # A file name the runtime refuses (its own check: tests/test_runtime_schemas.py) is refused by the schema the
    # miner registered first: the job is never handed to it (nor, once submit checks the live miners, accepted).
    body = {"type": "command", "input": {"script": "true", "files": {"../escape": "x"}}}
    answer = await stack.http.post("/v1/jobs", json=body, headers=stack.headers)
    reason = "input for 'command' at files: '../escape' does not match"
    if answer.status_code == 422:
        assert reason in answer.json()["message"]
        return
    assert answer.status_code == 201, answer.text
    await stack.drain(command(stack))
    job = await stack.job(answer.json()["job_id"])
    assert job["status"] == "pending" and reason in job["waiting_for"]


async def test_logs_and_progress_go_out_in_batches(stack: InProcess) -> None:
    script = "for i in $(seq 1 3000); do echo line $i; done; echo AITBC_PROGRESS=50; sleep 1.5; echo last"
    job, files = await run_one(stack, script)
    assert job["status"] == "completed"
    assert len(files["logs/stdout.log"].decode().splitlines()) == 3002
    events = await stack.coordinator.job_store.job_events(job["job_id"], ["log"])
    streamed = [line["line"] for event in events for line in event.data["lines"]]
    assert streamed[0] == "line 1" and streamed[-1] == "last" and len(streamed) == 3001
    assert "AITBC_PROGRESS=50" not in streamed  # progress, not a log line (it stays in stdout.log)
    # 3002 lines in a couple of seconds: a handful of batches of up to 1000 lines, not one call per line.
    assert stack.miner_transport.count("/logs") <= 8
    assert stack.miner_transport.count("/progress") <= 3


def test_the_command_runtime_is_refused_without_allow_command(tmp_path: Path) -> None:
    config = MinerConfig(url="http://unused", api_key="k", name="t", work_dir=tmp_path, runtimes=("command",))
    built, missing = build_runtimes(config)
    assert built == {}
    assert "--allow-command" in missing["command"]
    answer = subprocess.run(
        [sys.executable, "-c", "from aitbc.cli.main import main; main()", "miner", "run", "--runtimes", "command"],
        env={**os.environ, "AITBC_API_KEY": "aitbc_x", "AITBC_URL": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 1
    assert "--allow-command" in answer.stderr


async def wait_running(stack: InProcess, job_id: str) -> None:
    deadline = time.monotonic() + 20
    while (await stack.job(job_id))["status"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        await asyncio.sleep(0.05)


async def test_on_stop_a_job_that_ends_within_the_grace_still_completes(stack: InProcess) -> None:
    job_id = await stack.submit(type="command", input="sleep 1; echo finished")
    agent = stack.agent(command(stack), drain=False, shutdown_grace_seconds=10)
    running = asyncio.create_task(agent.run())
    await wait_running(stack, job_id)
    agent.request_stop()
    await asyncio.wait_for(running, timeout=20)
    assert (await stack.job(job_id))["status"] == "completed"
    assert (await stack.package(job_id))[1]["result.txt"] == b"finished\n"


async def test_on_stop_a_job_still_running_after_the_grace_is_handed_back(stack: InProcess) -> None:
    job_id = await stack.submit(type="command", input="sleep 600")
    agent = stack.agent(command(stack), drain=False, shutdown_grace_seconds=0.2)
    running = asyncio.create_task(agent.run())
    await wait_running(stack, job_id)
    agent.request_stop()
    await asyncio.wait_for(running, timeout=20)  # the job sleeps 600 s: the agent stopped at its grace
    job = await stack.job(job_id)
    assert (job["status"], job["attempt"]) == ("pending", 1)


async def test_a_package_the_coordinator_refuses_fails_the_job_and_stays_on_disk(tmp_path: Path) -> None:
    async with in_process(tmp_path, max_result_file_bytes=1024 * 1024) as small:
        job_id = await small.submit(type="command", input='head -c 2000000 /dev/zero > "$AITBC_ARTIFACTS_DIR/big"')
        await small.drain(command(small))
        job = await small.job(job_id)
        assert (job["status"], job["failure_reason"]) == ("failed", "runtime_error")
        assert "refused the job's result package" in job["error"]
        kept = tmp_path / "miners" / "in-process" / "rejected" / job_id / "package" / "artifacts" / "big"
        assert kept.stat().st_size == 2_000_000


async def test_a_package_past_the_job_upload_quota_fails_the_job_and_is_purged(tmp_path: Path) -> None:
    options = {"max_job_upload_bytes": 1_500_000, "run_results_sweeper": False, "purge_grace_seconds": 0}
    async with in_process(tmp_path, **options) as small:
        script = 'for n in 1 2; do head -c 1000000 /dev/zero > "$AITBC_ARTIFACTS_DIR/part$n"; done'
        job_id = await small.submit(type="command", input=script)
        await small.drain(command(small))
        job = await small.job(job_id)
        assert (job["status"], job["failure_reason"], job["results"]) == ("failed", "runtime_error", "none")
        assert "refused the job's result package" in job["error"] and "per job" in job["error"]
        stored = small.coordinator.settings.blob_dir / "results" / job_id
        assert any(p.is_file() for p in stored.rglob("*")), "the files under the quota were stored"
        await small.coordinator.retention.run_once()
        await small.coordinator.retention.run_once()
        assert [p for p in stored.rglob("*") if p.is_file()] == []


async def test_symlinks_a_script_leaves_are_never_followed(stack: InProcess, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("do not upload me")
    script = f'ln -s {secret} "$AITBC_RESULT_FILE"; ln -s {secret} "$AITBC_ARTIFACTS_DIR/copy"; echo out'
    job, files = await run_one(stack, script)
    assert job["status"] == "completed"
    assert files["result.txt"] == b"out\n"
    assert "artifacts/copy" not in files
    assert all(b"do not upload me" not in data for data in files.values())


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs a miner running as root")
async def test_run_as_keeps_the_job_away_from_the_miners_secrets(stack: InProcess) -> None:
    reachable = Path(tempfile.mkdtemp(prefix="aitbc-run-as-", dir="/tmp"))
    reachable.chmod(0o755)
    try:
        key_file = reachable / "miner" / "state" / "miner_ed25519.pem"
        script = (
            "id -u\n"
            'cat "$KEY_FILE" > /dev/null 2>&1 || echo "key: no access"; echo mine > "$AITBC_RESULT_FILE"\n'
            'echo art > "$AITBC_ARTIFACTS_DIR/a.txt"; ln -s "$KEY_FILE" "$AITBC_ARTIFACTS_DIR/key.pem"'
        )
        job_id = await stack.submit(type="command", input=script, params={"env": {"KEY_FILE": str(key_file)}})
        runtimes = command(stack, command_user="nobody", work_dir=reachable / "miner")
        await stack.drain(runtimes, work_dir=reachable / "miner")
        job = await stack.job(job_id)
        assert job["status"] == "completed", job
        _, files = await stack.package(job_id)
        assert files["logs/stdout.log"].decode().splitlines() == ["1000", "key: no access"]
        assert files["result.txt"] == b"mine\n"
        assert files["artifacts/a.txt"] == b"art\n"
        assert "artifacts/key.pem" not in files
    finally:
        shutil.rmtree(reachable, ignore_errors=True)


async def test_max_jobs_runs_that_many_at_once(stack: InProcess) -> None:
    jobs = [await stack.submit(type="command", input="sleep 1; echo done") for _ in range(2)]
    await stack.drain(command(stack), max_jobs=2)
    views = [await stack.job(job_id) for job_id in jobs]
    assert [view["status"] for view in views] == ["completed", "completed"]
    # Both had started before either finished: they ran side by side.
    assert max(view["started_at"] for view in views) < min(view["completed_at"] for view in views)
