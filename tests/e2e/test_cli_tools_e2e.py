"""End to end, as the troubleshooting guide types them: `aitbc --config`, `aitbc blockchain status` and
`aitbc --debug` against `aitbc serve` as a real process; and two `serve`s on two data folders that keep a
profile each in one profile file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aitbc.domain.redaction import mask_key
from aitbc.version import VERSION
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def test_config_as_the_guide_types_it(stack: Stack) -> None:
    shown = stack.cli("--config").stdout
    assert "AITBC configuration" in shown and stack.url in shown and "environment AITBC_URL" in shown
    assert mask_key(stack.client_key) in shown and "profile 'default'" in shown
    assert stack.client_key not in shown and stack.admin_key not in shown
    as_json = stack.json("config", "show")
    assert as_json["url"] == {"value": stack.url, "source": "environment AITBC_URL"}
    assert as_json["config_file"]["value"] == str(stack.profile_path)
    from_profile = json.loads(stack.cli("config", "show", "--json", env={"AITBC_URL": ""}).stdout)
    assert from_profile["url"] == {"value": stack.url, "source": "profile 'default'"}


def test_blockchain_status_tests_the_connection_and_the_key(stack: Stack) -> None:
    report = stack.json("blockchain", "status")
    assert report["reachable"] is True and report["url"] == stack.url and report["version"] == VERSION
    assert report["round_trip_ms"] >= 0
    assert (report["key_accepted"], report["account"], report["role"]) == (True, "default", "client")
    assert report["api_key"] == mask_key(stack.client_key)
    assert report["settlement"]["kind"] == "ledger" and report["settlement"]["chain"] is None
    human = stack.cli("blockchain", "status").stdout
    assert "reachable" in human and VERSION in human and "accepted" in human
    assert "settles in its own ledger" in human and "append-only" in human

    refused = stack.cli("blockchain", "status", "--api-key", "aitbc_" + "x" * 43, check=False)
    assert refused.returncode == 1 and "refused" in refused.stdout
    admin = json.loads(stack.cli("blockchain", "status", "--json", env={"AITBC_API_KEY": stack.admin_key}).stdout)
    assert (admin["role"], admin["api_key_source"]) == ("admin", "environment AITBC_API_KEY")


def test_blockchain_status_when_the_coordinator_is_unreachable(stack: Stack) -> None:
    down = stack.cli("blockchain", "status", "--url", "http://127.0.0.1:9", check=False)
    assert down.returncode == 1
    assert "unreachable" in down.stdout and "cannot reach the coordinator at http://127.0.0.1:9" in down.stderr
    assert "Traceback" not in down.stderr
    as_json = stack.cli("blockchain", "status", "--url", "http://127.0.0.1:9", "--json", check=False)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["reachable"] is False and "cannot reach" in report["error"] and report["version"] is None


def test_debug_logs_every_exchange_and_never_a_key(stack: Stack) -> None:
    alone = stack.cli("--debug")  # the guide's spelling: the configuration, then the connectivity test
    assert "AITBC configuration" in alone.stdout and "reachable" in alone.stdout and "accepted" in alone.stdout
    log = alone.stderr
    assert f"debug: request GET {stack.url}/v1/health" in log
    assert re.search(
        rf"debug: answer  200 OK GET {re.escape(stack.url)}/v1/whoami in [0-9.]+ ms \[[0-9a-f]{{16}}\]", log
    )
    assert f"x-api-key: {mask_key(stack.client_key)}" in log

    job_id = stack.submit("--type", "command", "--input", "echo hi")
    listed = stack.cli("--debug", "client", "status", "--job-id", job_id)
    assert job_id in listed.stdout and f"GET {stack.url}/v1/jobs/{job_id}" in listed.stderr
    refused = stack.cli("--debug", "client", "list", "--api-key", "aitbc_" + "z" * 43, check=False)
    assert refused.returncode == 1 and "answer  401" in refused.stderr
    for output in (alone.stdout, alone.stderr, listed.stdout, listed.stderr, refused.stderr):
        assert stack.client_key not in output and stack.admin_key not in output
        assert "aitbc_" + "z" * 43 not in output
    quiet = stack.cli("client", "list")
    assert "debug:" not in quiet.stderr


def test_two_serves_on_two_data_folders_keep_both_profiles(tmp_path: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
    first, second = Stack(tmp_path / "one"), Stack(tmp_path / "two")
    second.environment["AITBC_CONFIG"] = first.environment["AITBC_CONFIG"]  # one user, one profile file
    second.data_dir = tmp_path / "two" / "lab"
    try:
        first.start_server()
        second.start_server()
        banner = " ".join(second.banner.split())  # as printed, wrapped at the terminal's width
        assert "'lab'" in banner and "default profile is still 'default'" in banner
        assert "aitbc profile use lab" in banner
        profiles = {row["name"]: row for row in first.json("profile", "list")}
        assert set(profiles) == {"default", "lab"}
        assert profiles["default"]["default"] and profiles["default"]["url"] == first.url
        assert profiles["lab"]["url"] == second.url and not profiles["lab"]["default"]
        assert (first.profile()["api_key"], first.profile("lab")["api_key"]) == (first.client_key, second.client_key)

        no_url = {"AITBC_URL": ""}  # the stacks' environment names a URL; a user's has none
        job_one = first.cli("client", "submit", "--type", "command", "--input", "x", env=no_url).stdout.strip()
        job_two = first.cli("--profile", "lab", "client", "submit", "--type", "command", "--input", "y", env=no_url)
        assert [j["job_id"] for j in first.json("client", "list", env=no_url)["jobs"]] == [job_one]
        lab = json.loads(first.cli("--profile", "lab", "client", "list", "--json", env=no_url).stdout)
        assert [j["job_id"] for j in lab["jobs"]] == [job_two.stdout.strip()]
        from_env = json.loads(
            first.cli("blockchain", "status", "--json", env={**no_url, "AITBC_PROFILE": "lab"}).stdout
        )
        assert from_env["url"] == second.url and from_env["key_accepted"] is True

        first.cli("profile", "use", "lab")
        assert json.loads(first.cli("blockchain", "status", "--json", env=no_url).stdout)["url"] == second.url
        assert first.profile_path.stat().st_mode & 0o777 == 0o600
    finally:
        first.close()
        second.close()
