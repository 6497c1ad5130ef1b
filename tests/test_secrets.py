"""Secrets stay secret: API keys and share tokens never reach the server's log (the real server, its real log
output), the first start's keys are printed once and kept in an owner-only profile, the data folder and what
is written into it later are owner-only, and a miner's key never travels on a command line or sits in a file
of the coordinator's data folder."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import subprocess
from pathlib import Path

import httpx
import pytest
import websocket

from aitbc.blobs.local import LocalBlobStore
from aitbc.cli.local_miners import LOCAL_MINER_KEY_NAME, local_miner_work_dir
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.support.processes import processes_with
from tests.support.stack import AITBC, Stack
from tests.support.waiting import wait_until


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def everything_under(folder: Path) -> list[Path]:
    return [folder, *folder.rglob("*")]


async def _chunks(data: bytes):  # type: ignore[no-untyped-def]
    yield data


# -- the log --------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_keys_and_share_tokens_never_reach_the_server_log(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        stack.start_server("--log-level", "info")  # info: uvicorn logs every WebSocket handshake and request
        log = tmp_path / "serve.log"
        banner = log.read_text()
        assert "shown only this once" in banner and "profile" in banner
        profile = tmp_path / "profile.json"
        assert mode(profile) == 0o600 and str(profile) in banner.replace("\n", "")
        keys = stack.profile()
        client_key, admin_key = keys["api_key"], keys["admin_api_key"]

        # A browser's way in: the key in the query string. uvicorn logs the handshake through uvicorn.error.
        socket = websocket.create_connection(
            stack.url.replace("http", "ws") + f"/v1/jobs/ws?api_key={client_key}&since=0", timeout=10
        )
        socket.close()
        refused = httpx.get(f"{stack.url}/v1/jobs?api_key={admin_key}", headers={"X-Api-Key": client_key})
        assert refused.status_code == 200
        job_id = stack.post_job(type="command", input="echo hi")
        # A share link's token, on a job without results: the path is logged whatever the answer.
        shared = httpx.get(f"{stack.url}/v1/shared/aitbcs_{'x' * 43}")
        assert shared.status_code == 404
        stack.stop_server()

        lines = log.read_text()[len(banner) :].splitlines()
        websocket_lines = [line for line in lines if "WebSocket /v1/jobs/ws" in line]
        assert websocket_lines, lines  # the line is logged, so the redaction is what keeps the key out
        assert all("api_key=<redacted>" in line for line in websocket_lines)
        assert any("/v1/jobs?api_key=<redacted>" in line for line in lines)
        assert any("/v1/shared/<token>" in line for line in lines)
        assert any("POST /v1/jobs" in line for line in lines) and job_id
        for secret in (client_key, admin_key, "x" * 43):
            assert not [line for line in lines if secret in line]
        # The keys were printed once, in the banner, and never again on a second start.
        assert log.read_text().count(client_key) == 1
        stack.start_server()
        stack.stop_server()
        assert log.read_text().count(client_key) == 1
    finally:
        stack.close()


# -- the data folder ------------------------------------------------------------------------------------


def test_the_data_folder_and_everything_in_it_is_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def use_it() -> dict[Path, int]:
        async with coordinator_session(Settings(data_dir=data_dir, run_reaper=False)) as coordinator:
            await coordinator.accounts.bootstrap()  # writes to the database: its -wal and -shm appear
            blobs = LocalBlobStore(data_dir / "blobs")
            await blobs.write("results/job_1/lease_1/abc", _chunks(b"tenant data"))
            return {path: mode(path) for path in everything_under(data_dir)}  # while the database is open

    modes = asyncio.run(use_it())
    names = {path.name for path in modes}
    assert {"aitbc.db", "aitbc.db-wal", "aitbc.db-shm", "blobs", "results", "job_1", "lease_1", "abc"} <= names
    assert "coordinator_ed25519.key" in names
    for path, found in modes.items():
        assert found == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(found)}"


def test_an_existing_world_readable_data_folder_is_closed_on_start(tmp_path: Path) -> None:
    """A data folder made by an earlier version (0755 folders, 0644 database) is owner-only after a start."""
    data_dir = tmp_path / "data"

    async def start() -> None:
        async with coordinator_session(Settings(data_dir=data_dir, run_reaper=False)) as coordinator:
            await coordinator.accounts.bootstrap()

    asyncio.run(start())
    database = data_dir / "aitbc.db"
    data_dir.chmod(0o755)
    database.chmod(0o644)
    asyncio.run(start())
    assert (mode(data_dir), mode(database)) == (0o700, 0o600)


def test_blobs_written_later_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """The mode is set by the store, not left to the umask of the process that writes (here 0, the worst)."""
    script = (
        "import asyncio, os, sys\n"
        "from pathlib import Path\n"
        "from aitbc.blobs.local import LocalBlobStore\n"
        "os.umask(0)\n"
        "async def chunks():\n"
        "    yield b'x'\n"
        "store = LocalBlobStore(Path(sys.argv[1]))\n"
        "asyncio.run(store.write('inputs/acct_1/file_1', chunks()))\n"
    )
    subprocess.run([AITBC[0], "-c", script, str(tmp_path / "blobs")], check=True, timeout=60)
    found = everything_under(tmp_path / "blobs")
    assert len(found) == 4
    for path in found:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode(path))}"


# -- miner keys -----------------------------------------------------------------------------------------


def miner_run(stack: Stack, *options: str, environment: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*AITBC, "miner", "run", "--gpus", "none", "--allow-command", "--runtimes", "command", *options],
        env=environment or stack.environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def miner_runtimes(stack: Stack) -> dict[str, list[str]]:
    """Registered miners by name, with the runtimes they offer (read from the coordinator's database)."""
    with sqlite3.connect(stack.data_dir / "aitbc.db") as database:
        rows = database.execute("SELECT name, runtimes FROM miners").fetchall()
    return {name: json.loads(runtimes) for name, runtimes in rows}


def registered_miners(stack: Stack) -> list[str]:
    return list(miner_runtimes(stack))


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=30)
    return output


@pytest.mark.e2e
def test_miner_key_from_a_file_or_the_environment_and_a_warning_for_the_command_line(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        stack.start_server()
        key = stack.make_miner_key()
        key_file = tmp_path / "miner.key"
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
        common = ("--url", stack.url, "--work-dir")
        from_file = miner_run(
            stack, *common, str(tmp_path / "a"), "--name", "from-file", "--api-key-file", str(key_file)
        )
        from_environment = miner_run(
            stack,
            *common,
            str(tmp_path / "b"),
            "--name",
            "from-env",
            environment={**stack.environment, "AITBC_API_KEY": key},
        )
        from_command_line = miner_run(stack, *common, str(tmp_path / "c"), "--name", "from-argv", "--api-key", key)
        wait_until(
            lambda: {"from-file", "from-env", "from-argv"} <= set(registered_miners(stack)),
            timeout=60,
            what="three miners to register",
        )
        assert "--api-key" not in stop(from_file) and "Warning" not in stop(from_environment)
        warned = stop(from_command_line)
        assert "--api-key on the command line is visible" in warned and "--api-key-file" in warned

        key_file.chmod(0o644)
        loose = miner_run(stack, *common, str(tmp_path / "d"), "--name", "loose", "--api-key-file", str(key_file))
        wait_until(lambda: "loose" in registered_miners(stack), timeout=60, what="the miner to register")
        assert "readable by other users" in stop(loose)

        missing = subprocess.run(
            [*AITBC, "miner", "run", "--url", stack.url, "--api-key-file", str(tmp_path / "nope")],
            env=stack.environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert missing.returncode == 1 and "cannot read --api-key-file" in missing.stderr
    finally:
        stack.close()


def environ_of(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")


def cmdline_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")


@pytest.mark.e2e
def test_local_miners_get_their_key_by_pipe_and_a_folder_outside_the_data_folder(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    state = tmp_path / "state"
    stack.environment["XDG_STATE_HOME"] = str(state)
    stack.environment["AITBC_API_KEY"] = "aitbc_" + "s" * 43  # serve's own environment must not pass through
    try:
        stack.start_server("--miners", "2")
        work_dirs = [local_miner_work_dir(stack.data_dir, f"local-{n}", state) for n in (1, 2)]
        pids = [wait_until(lambda w=w: processes_with(str(w)), timeout=30, what="a local miner")[0] for w in work_dirs]
        wait_until(lambda: {"local-1", "local-2"} <= set(registered_miners(stack)), timeout=60, what="registration")
        for work_dir, pid in zip(work_dirs, pids, strict=True):
            assert not work_dir.is_relative_to(stack.data_dir)
            assert mode(work_dir) == 0o700
            assert "AITBC_API_KEY" not in environ_of(pid) and "aitbc_" not in cmdline_of(pid)
        # Nothing but `--allow-command` offers command jobs.
        assert not [name for name, runtimes in miner_runtimes(stack).items() if "command" in runtimes]
        assert not [p for p in everything_under(stack.data_dir) if p.name.endswith(".key") and "miner" in p.name]

        # A restart hands the miners a new key and revokes the last one: no miner key outlives its run.
        stack.stop_server()
        wait_until(lambda: not processes_with(str(work_dirs[0])), timeout=30, what="the local miners to stop")
        stack.start_server("--miners", "1", "--allow-command")
        wait_until(lambda: processes_with(str(work_dirs[0])), timeout=30, what="the local miner")
        answer = httpx.get(f"{stack.url}/v1/admin/keys", headers={"X-Api-Key": stack.admin_key}, timeout=10)
        local = [key for key in answer.json() if key["name"] == LOCAL_MINER_KEY_NAME]
        assert len(local) == 2 and [key["revoked_at"] is None for key in local].count(True) == 1, local
        wait_until(
            lambda: "command" in miner_runtimes(stack)["local-1"], timeout=60, what="local-1 to offer command jobs"
        )
        job_id = stack.post_job(type="command", input="echo allowed")
        assert stack.wait_status(job_id, {"completed", "failed"}, timeout=60)["status"] == "completed"
    finally:
        stack.close()
