"""Changing the profile file: the keys a first `aitbc serve` makes, and which profile is the default.

A coordinator's keys go to the profile named (`serve --profile`, `aitbc --profile`, AITBC_PROFILE), else to
the profile that already points at its data (a data folder started afresh replaces its own profile), else to
`default` when the file has no profile yet, else to a new profile named after the data folder. No start
overwrites another coordinator's profile unless told to by name, and the default moves only when there was
none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aitbc.sdk.config import (
    DEFAULT_PROFILE,
    ProfileFile,
    check_profile_name,
    load_profiles,
    save_profiles,
    selected_profile_request,
)

MAX_NAME = 40
FALLBACK_NAME = "coordinator"


@dataclass(frozen=True)
class Origin:
    """Where a coordinator keeps its keys: its data folder, and its database when that is not the folder's
    SQLite file (a PostgreSQL URL, password hidden)."""

    data_dir: str
    database: str | None = None

    def of(self, values: dict[str, Any]) -> bool:
        return values.get("data_dir") == self.data_dir and values.get("database") == self.database

    def fields(self) -> dict[str, Any]:
        return {"data_dir": self.data_dir, **({"database": self.database} if self.database else {})}


@dataclass(frozen=True)
class SavedProfile:
    """What storing a coordinator's keys did."""

    name: str
    file: ProfileFile
    is_default: bool
    replaced_elsewhere: dict[str, Any] | None  # the profile of that name before, when it pointed at other data


def name_from(text: str) -> str:
    """A profile name made of a folder's or database's name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:MAX_NAME]
    return cleaned or FALLBACK_NAME


def _unused(file: ProfileFile, base: str) -> str:
    name, number = base, 2
    while name in file.profiles:
        suffix = f"-{number}"
        name, number = base[: MAX_NAME - len(suffix)] + suffix, number + 1
    return name


def profile_for(file: ProfileFile, origin: Origin, asked: str | None, label: str) -> str:
    if asked is not None:
        return check_profile_name(asked)
    same = [name for name, values in file.profiles.items() if origin.of(values)]
    if same:
        default = file.default_name()
        return default if default in same else same[0]
    if not file.profiles:
        return DEFAULT_PROFILE
    return _unused(file, name_from(label))


def save_coordinator_keys(keys: dict[str, str], origin: Origin, label: str, asked: str | None = None) -> SavedProfile:
    """Store a new coordinator's keys (`url`, `api_key`, `admin_api_key`) in the profile `profile_for` picks;
    `asked` defaults to `--profile` / AITBC_PROFILE."""
    file = load_profiles()
    name = profile_for(file, origin, asked if asked is not None else selected_profile_request(), label)
    before = file.profiles.get(name)
    file.profiles[name] = {**keys, **origin.fields()}
    default = file.default_name()
    file.default = name if default is None else default
    save_profiles(file)
    elsewhere = before if before is not None and not origin.of(before) else None
    return SavedProfile(name, file, file.default_name() == name, elsewhere)


def pointing_at(origin: Origin) -> str | None:
    """The profile that holds the keys of the coordinator at `origin`, if one does."""
    file = load_profiles()
    return next((name for name, values in file.profiles.items() if origin.of(values)), None)


def use_profile(name: str) -> ProfileFile:
    """Make `name` the default profile."""
    file = load_profiles()
    if name not in file.profiles:
        raise file.missing(name)
    file.default = name
    save_profiles(file)
    return file
