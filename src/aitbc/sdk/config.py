"""Where to connect and with which key: explicit values, then AITBC_URL / AITBC_API_KEY, then a profile of the
profile file (`AITBC_CONFIG`, default ~/.config/aitbc/profile.json, mode 0600: it holds keys).

The file holds named profiles, one of them the default, and what is shared by all of them:

    {"default_profile": "default",
     "profiles": {"default": {"url": …, "api_key": …, "admin_api_key": …, "data_dir": …}, "lab": {…}},
     "coordinator_keys": {…}}              (file-wide: the coordinator keys `aitbc client verify` pinned)

A profile is chosen by name (`profile=`, the CLI's `--profile`), then by AITBC_PROFILE, then the file's default.
The one-profile file of earlier versions (`url`, `api_key`, … at the top) reads as the profile `default`, and
is written in the named form on its next change.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aitbc.sdk.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_PROFILE = "default"
# What a profile holds (the connection, and where `aitbc serve` made its keys); the rest of the file is shared.
PROFILE_FIELDS = ("url", "api_key", "admin_api_key", "miner_api_key", "data_dir", "database")
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
NAMED_FORM = ("default_profile", "profiles")

_chosen: str | None = None  # the process's `--profile` (set once by the CLI's root options)


def choose_profile(name: str | None) -> None:
    """Use the profile `name` for every connection this process makes without a profile of its own (the CLI's
    `aitbc --profile NAME …`); None: AITBC_PROFILE, then the file's default."""
    global _chosen
    if name is not None:
        check_profile_name(name)
    _chosen = name


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a profile name: use up to 40 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def profile_path() -> Path:
    configured = os.environ.get("AITBC_CONFIG")
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "aitbc" / "profile.json"


def profile_path_source() -> str:
    if os.environ.get("AITBC_CONFIG"):
        return "environment AITBC_CONFIG"
    if os.environ.get("XDG_CONFIG_HOME"):
        return "environment XDG_CONFIG_HOME"
    return "default location"


@dataclass
class ProfileFile:
    """The whole profile file: its profiles by name, which one is the default, and the shared settings."""

    path: Path
    default: str | None = None
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)

    def default_name(self) -> str | None:
        """The file's default; a file of one profile and no default uses that one."""
        if self.default in self.profiles:
            return self.default
        if DEFAULT_PROFILE in self.profiles:
            return DEFAULT_PROFILE
        return next(iter(self.profiles)) if len(self.profiles) == 1 else None

    def missing(self, name: str) -> ConfigError:
        known = ", ".join(sorted(self.profiles)) or "none yet"
        return ConfigError(
            f"no profile named {name!r} in {self.path} (its profiles: {known}); see `aitbc profile list`, or run "
            f"`aitbc serve --profile {name}` on a new data folder to make one"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the profile file {path}: {error}") from error
    return loaded if isinstance(loaded, dict) else {}


def load_profiles(path: Path | None = None) -> ProfileFile:
    path = path or profile_path()
    raw = _read_json(path)
    if any(name in raw for name in NAMED_FORM):
        listed = raw.get("profiles")
        profiles = {
            str(name): dict(values)
            for name, values in (listed.items() if isinstance(listed, dict) else ())
            if isinstance(values, dict)
        }
        default = raw.get("default_profile")
        shared = {name: value for name, value in raw.items() if name not in NAMED_FORM}
        return ProfileFile(path, default if isinstance(default, str) else None, profiles, shared)
    single = {name: raw[name] for name in PROFILE_FIELDS if name in raw}  # the one-profile form
    shared = {name: value for name, value in raw.items() if name not in PROFILE_FIELDS}
    if not single:
        return ProfileFile(path, None, {}, shared)
    return ProfileFile(path, DEFAULT_PROFILE, {DEFAULT_PROFILE: single}, shared)


def save_profiles(file: ProfileFile) -> Path:
    """Write the file in the named form, readable by its owner only, replacing it at once (never half-written)."""
    document = {
        **file.shared,
        "default_profile": file.default_name(),
        "profiles": file.profiles,
    }
    file.path.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.path.with_suffix(".tmp")
    temporary.touch(mode=0o600)
    temporary.chmod(0o600)
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(file.path)
    return file.path


def selected_profile_request() -> str | None:
    """The profile asked for by name, if any: `--profile`, then AITBC_PROFILE."""
    return _chosen if _chosen is not None else (os.environ.get("AITBC_PROFILE") or None)


def selected_profile(file: ProfileFile, name: str | None = None) -> tuple[str | None, str]:
    """The profile in use and what chose it: `name`, then `--profile`, then AITBC_PROFILE, then the file's
    default. A profile chosen by name must exist."""
    for chosen, source in (
        (name, "argument"),
        (_chosen, "flag --profile"),
        (os.environ.get("AITBC_PROFILE") or None, "environment AITBC_PROFILE"),
    ):
        if chosen is not None:
            if chosen not in file.profiles:
                raise file.missing(chosen)
            return chosen, source
    default = file.default_name()
    return default, ("profile file's default" if default is not None else "none: the profile file has no profiles")


def read_profile(path: Path | None = None, name: str | None = None) -> dict[str, Any]:
    """The profile in use (see `selected_profile`), with the file's shared settings: what a command reads."""
    file = load_profiles(path)
    chosen, _ = selected_profile(file, name)
    return {**file.shared, **(file.profiles.get(chosen, {}) if chosen else {})}


def write_profile(values: dict[str, Any], path: Path | None = None) -> Path:
    """Merge file-wide settings (pinned coordinator keys) into the profile file."""
    file = load_profiles(path)
    file.shared.update(values)
    return save_profiles(file)


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str | None


@dataclass(frozen=True)
class Setting:
    """One effective setting and where it came from (`aitbc --config`)."""

    value: str | None
    source: str


def _first(*candidates: tuple[Any, str]) -> Setting:
    for value, source in candidates:
        if value:
            return Setting(str(value), source)
    return Setting(None, "-")


def effective_settings(
    url: str | None = None, api_key: str | None = None, profile: str | None = None
) -> dict[str, Setting]:
    """Every connection setting as a command would resolve it, with its source; keys in full (mask them)."""
    file = load_profiles()
    chosen, chosen_by = selected_profile(file, profile)
    values = file.profiles.get(chosen, {}) if chosen else {}
    in_profile = f"profile {chosen!r}"
    url_setting = _first(
        (url, "flag --url"), (os.environ.get("AITBC_URL"), "environment AITBC_URL"), (values.get("url"), in_profile)
    )
    return {
        "config_file": Setting(str(file.path), profile_path_source()),
        "profile": Setting(chosen, chosen_by),
        "url": url_setting if url_setting.value else Setting(DEFAULT_URL, "default"),
        "api_key": _first(
            (api_key, "flag --api-key"),
            (os.environ.get("AITBC_API_KEY"), "environment AITBC_API_KEY"),
            (values.get("api_key"), in_profile),
        ),
        "admin_api_key": _first(
            (os.environ.get("AITBC_ADMIN_API_KEY"), "environment AITBC_ADMIN_API_KEY"),
            (values.get("admin_api_key"), in_profile),
        ),
        "miner_api_key": _first((values.get("miner_api_key"), in_profile)),
        "data_dir": _first((values.get("data_dir"), in_profile)),
    }


def resolve_connection(url: str | None = None, api_key: str | None = None, profile: str | None = None) -> Connection:
    values = read_profile(name=profile)
    resolved_url = url or os.environ.get("AITBC_URL") or values.get("url") or DEFAULT_URL
    resolved_key = api_key or os.environ.get("AITBC_API_KEY") or values.get("api_key")
    return Connection(url=str(resolved_url).rstrip("/"), api_key=resolved_key)
