"""The CLI's configuration without a coordinator: which source each setting comes from (flag, then environment,
then the chosen profile, then the default), named profiles chosen by `--profile` / AITBC_PROFILE, the
one-profile file of earlier versions, and where `aitbc serve` stores a new coordinator's keys."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aitbc.cli.main import app
from aitbc.sdk.config import DEFAULT_URL, load_profiles, read_profile, resolve_connection
from aitbc.sdk.profiles import Origin, save_coordinator_keys

KEY_DEFAULT = "aitbc_" + "d" * 39 + "DEF1"
KEY_LAB = "aitbc_" + "l" * 39 + "LAB2"
KEY_ENV = "aitbc_" + "e" * 39 + "ENV3"
KEY_FLAG = "aitbc_" + "f" * 39 + "FLG4"
ADMIN = "aitbc_" + "a" * 39 + "ADM5"


@pytest.fixture
def profile_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "profile.json"
    monkeypatch.setenv("AITBC_CONFIG", str(path))
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("AITBC_URL", "AITBC_API_KEY", "AITBC_ADMIN_API_KEY", "AITBC_PROFILE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    return path


def two_profiles(path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "default_profile": "default",
                "profiles": {
                    "default": {"url": "http://127.0.0.1:8101", "api_key": KEY_DEFAULT, "admin_api_key": ADMIN},
                    "lab": {"url": "http://127.0.0.1:8102", "api_key": KEY_LAB, "data_dir": "/srv/lab"},
                },
            }
        )
    )


def aitbc(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def config(*args: str, profile: str | None = None) -> dict[str, Any]:
    """`aitbc [--profile NAME] config show --json ARGS`, checked to show no key in full."""
    code, out, err = aitbc(*(("--profile", profile) if profile else ()), "config", "show", "--json", *args)
    assert code == 0, err
    for secret in (KEY_DEFAULT, KEY_LAB, KEY_ENV, KEY_FLAG, ADMIN):
        assert secret not in out
    shown: dict[str, Any] = json.loads(out)
    return shown


def test_each_setting_comes_from_the_first_source_that_has_it(
    profile_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_profiles(profile_file)
    shown = config()
    assert shown["config_file"] == {"value": str(profile_file), "source": "environment AITBC_CONFIG"}
    assert shown["profile"] == {"value": "default", "source": "profile file's default"}
    assert shown["url"] == {"value": "http://127.0.0.1:8101", "source": "profile 'default'"}
    assert shown["api_key"] == {"value": "aitbc_…DEF1", "source": "profile 'default'"}
    assert shown["admin_api_key"] == {"value": "aitbc_…ADM5", "source": "profile 'default'"}
    assert shown["profiles"]["value"] == "default, lab"
    assert shown["debug"]["value"] == "off"

    monkeypatch.setenv("AITBC_URL", "http://127.0.0.1:8103")
    monkeypatch.setenv("AITBC_API_KEY", KEY_ENV)
    shown = config()
    assert shown["url"] == {"value": "http://127.0.0.1:8103", "source": "environment AITBC_URL"}
    assert shown["api_key"] == {"value": "aitbc_…ENV3", "source": "environment AITBC_API_KEY"}
    assert resolve_connection().api_key == KEY_ENV

    shown = config("--url", "http://127.0.0.1:8104", "--api-key", KEY_FLAG)
    assert shown["url"] == {"value": "http://127.0.0.1:8104", "source": "flag --url"}
    assert shown["api_key"] == {"value": "aitbc_…FLG4", "source": "flag --api-key"}
    assert resolve_connection("http://127.0.0.1:8104/", KEY_FLAG).url == "http://127.0.0.1:8104"

    # A command connects where the configuration says: the flag's URL, not the environment's or the profile's.
    code, _, err = aitbc("client", "list", "--url", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach the coordinator at http://127.0.0.1:9" in err


def test_a_profile_is_chosen_by_flag_then_environment_then_the_files_default(
    profile_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_profiles(profile_file)
    shown = config(profile="lab")
    assert shown["profile"] == {"value": "lab", "source": "flag --profile"}
    assert shown["url"] == {"value": "http://127.0.0.1:8102", "source": "profile 'lab'"}
    assert shown["api_key"]["value"] == "aitbc_…LAB2" and shown["admin_api_key"]["value"] is None
    assert shown["data_dir"]["value"] == "/srv/lab"
    assert config()["profile"]["value"] == "default"  # `--profile` lasts one command

    monkeypatch.setenv("AITBC_PROFILE", "lab")
    assert config()["profile"] == {"value": "lab", "source": "environment AITBC_PROFILE"}
    assert resolve_connection().url == "http://127.0.0.1:8102"
    assert config(profile="default")["profile"] == {"value": "default", "source": "flag --profile"}

    monkeypatch.setenv("AITBC_PROFILE", "nope")
    code, _, err = aitbc("client", "list")
    assert code == 1 and "no profile named 'nope'" in err and "default, lab" in err
    code, _, err = aitbc("--profile", "../x", "client", "list")
    assert code == 1 and "not a profile name" in err


def test_without_a_profile_file_the_defaults_apply(profile_file: Path) -> None:
    shown = config()
    assert shown["url"] == {"value": DEFAULT_URL, "source": "default"}
    assert shown["api_key"]["value"] is None and shown["profile"]["value"] is None
    assert shown["config_file"]["value"].endswith("(not created yet)")
    code, out, _ = aitbc("--config")  # the guide's spelling: a table, then exit
    assert code == 0 and "AITBC configuration" in out and DEFAULT_URL in out and "not set" in out
    code, _, err = aitbc("client", "list")
    assert code == 1 and "no API key" in err


def test_the_one_profile_file_of_earlier_versions_still_reads(profile_file: Path) -> None:
    pins = {"http://127.0.0.1:8101": {"public_key": "k", "key_id": "id"}}
    profile_file.write_text(
        json.dumps({"url": "http://127.0.0.1:8101", "api_key": KEY_DEFAULT, "coordinator_keys": pins})
    )
    shown = config()
    assert shown["profile"] == {"value": "default", "source": "profile file's default"}
    assert shown["url"]["source"] == "profile 'default'" and shown["api_key"]["value"] == "aitbc_…DEF1"
    assert read_profile()["coordinator_keys"] == pins

    code, _, err = aitbc("profile", "use", "default")  # a change writes the named form, pins kept
    assert code == 0, err
    written = json.loads(profile_file.read_text())
    assert written["profiles"]["default"]["api_key"] == KEY_DEFAULT and written["coordinator_keys"] == pins
    assert written["default_profile"] == "default" and "url" not in written
    assert stat.S_IMODE(profile_file.stat().st_mode) == 0o600


def test_profile_list_and_use(profile_file: Path) -> None:
    two_profiles(profile_file)
    code, out, _ = aitbc("profile", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["name"], r["default"], r["api_key"]) for r in rows] == [
        ("default", True, "aitbc_…DEF1"),
        ("lab", False, "aitbc_…LAB2"),
    ]
    assert KEY_DEFAULT not in out and ADMIN not in out
    code, out, _ = aitbc("profile", "list")
    assert code == 0 and "lab" in out and "http://127.0.0.1:8102" in out and KEY_LAB not in out
    code, out, _ = aitbc("profile", "use", "lab")
    assert code == 0 and "'lab'" in out
    assert load_profiles().default_name() == "lab" and resolve_connection().url == "http://127.0.0.1:8102"
    code, _, err = aitbc("profile", "use", "nope")
    assert code == 1 and "no profile named 'nope'" in err
    assert load_profiles().default_name() == "lab"


def test_serve_stores_each_coordinators_keys_in_a_profile_of_its_own(profile_file: Path) -> None:
    def keys(port: int, key: str) -> dict[str, str]:
        return {"url": f"http://127.0.0.1:{port}", "api_key": key, "admin_api_key": ADMIN}

    first = save_coordinator_keys(keys(8101, KEY_DEFAULT), Origin("/srv/main"), "main")
    assert (first.name, first.is_default) == ("default", True)
    second = save_coordinator_keys(keys(8102, KEY_LAB), Origin("/srv/lab"), "lab")
    assert (second.name, second.is_default, second.replaced_elsewhere) == ("lab", False, None)
    third = save_coordinator_keys(keys(8103, KEY_ENV), Origin("/tmp/other/lab"), "lab")  # the same folder name
    assert third.name == "lab-2"
    again = save_coordinator_keys(keys(8104, KEY_FLAG), Origin("/srv/lab"), "lab")  # that data folder, made anew
    assert (again.name, again.replaced_elsewhere) == ("lab", None)
    postgres = Origin("/srv/lab", "postgresql://postgres:***@db/aitbc")
    assert save_coordinator_keys(keys(8105, KEY_FLAG), postgres, "aitbc").name == "aitbc"
    named = save_coordinator_keys(keys(8106, KEY_FLAG), Origin("/srv/elsewhere"), "x", asked="lab")
    assert named.name == "lab" and named.replaced_elsewhere is not None
    assert named.replaced_elsewhere["data_dir"] == "/srv/lab"

    file = load_profiles()
    assert file.default_name() == "default" and file.profiles["default"]["api_key"] == KEY_DEFAULT
    assert sorted(file.profiles) == ["aitbc", "default", "lab", "lab-2"]
    assert stat.S_IMODE(profile_file.stat().st_mode) == 0o600


def test_a_profile_of_an_earlier_version_is_not_overwritten_by_a_new_data_folder(profile_file: Path) -> None:
    profile_file.write_text(json.dumps({"url": "http://127.0.0.1:8101", "api_key": KEY_DEFAULT}))
    saved = save_coordinator_keys({"url": "http://127.0.0.1:8102", "api_key": KEY_LAB}, Origin("/srv/new"), "new")
    assert (saved.name, saved.is_default) == ("new", False)
    assert resolve_connection().api_key == KEY_DEFAULT
