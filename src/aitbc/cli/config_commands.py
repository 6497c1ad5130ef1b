"""`aitbc config show` (also `aitbc --config`): the effective configuration and where each value comes from;
`aitbc profile list|use`: the named profiles of the profile file. Keys are only ever shown masked."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.table import Table

from aitbc.cli.common import (
    JsonOption,
    KeyOption,
    UrlOption,
    add_text_row,
    as_text,
    console,
    handles_errors,
    print_json,
)
from aitbc.cli.root_options import debugging
from aitbc.domain.redaction import mask_key
from aitbc.sdk.config import Setting, effective_settings, load_profiles, profile_path_source, selected_profile
from aitbc.sdk.profiles import use_profile

config_app = typer.Typer(help="The CLI's configuration.", no_args_is_help=True)
profile_app = typer.Typer(help="Named CLI profiles: which coordinator and keys a command uses.", no_args_is_help=True)

SECRET_SETTINGS = ("api_key", "admin_api_key", "miner_api_key")
LABELS = {
    "config_file": "Config file",
    "profile": "Profile",
    "profiles": "Profiles in the file",
    "url": "Coordinator URL",
    "api_key": "API key",
    "admin_api_key": "Admin API key",
    "miner_api_key": "Miner API key",
    "data_dir": "Data folder (serve)",
    "color": "Output: color",
    "width": "Output: width",
    "debug": "Debug log",
}


def _output_settings() -> dict[str, Setting]:
    if os.environ.get("NO_COLOR"):
        color = Setting("off", "environment NO_COLOR")
    elif console.color_system is None:
        color = Setting("off", "standard output is not a terminal" if not console.is_terminal else "terminal")
    else:
        color = Setting(f"on ({console.color_system})", "terminal")
    width_source = "environment COLUMNS" if os.environ.get("COLUMNS") else "terminal size (80 without one)"
    return {
        "color": color,
        "width": Setting(str(console.width), width_source),
        "debug": Setting("on", "flag --debug") if debugging() else Setting("off", "default (turn on with --debug)"),
    }


def effective_configuration(url: str | None = None, api_key: str | None = None) -> dict[str, Setting]:
    """Every setting a command would use, keys masked, with where it came from."""
    resolved = effective_settings(url, api_key)
    for name in SECRET_SETTINGS:
        value = resolved[name].value
        if value is not None:
            resolved[name] = Setting(mask_key(value), resolved[name].source)
    file = load_profiles()
    created = "" if file.path.exists() else " (not created yet)"
    return {
        "config_file": Setting(f"{resolved.pop('config_file').value}{created}", profile_path_source()),
        "profile": resolved.pop("profile"),
        "profiles": Setting(", ".join(sorted(file.profiles)) or None, "profile file"),
        **resolved,
        **_output_settings(),
    }


@handles_errors
def show_config(url: str | None = None, api_key: str | None = None, as_json: bool = False) -> None:
    settings = effective_configuration(url, api_key)
    if as_json:
        print_json({name: {"value": s.value, "source": s.source} for name, s in settings.items()})
        return
    table = Table(title="AITBC configuration")
    for column in ("Setting", "Value", "Source"):
        table.add_column(column)
    for name, setting in settings.items():
        value = as_text(setting.value) if setting.value is not None else as_text("not set", "dim")
        add_text_row(table, LABELS.get(name, name), value, as_text(setting.source, "dim"))
    console.print(table)


@config_app.command("show")
def show(url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Show the effective configuration (URL, keys masked, profile, config file, output) and where each value
    comes from: a flag, an environment variable, the profile file, or the default."""
    show_config(url, api_key, as_json)


def _profile_rows() -> list[dict[str, Any]]:
    file = load_profiles()
    in_use, _ = selected_profile(file)
    default = file.default_name()
    return [
        {
            "name": name,
            "default": name == default,
            "in_use": name == in_use,
            "url": values.get("url"),
            "api_key": mask_key(str(values["api_key"])) if values.get("api_key") else None,
            "admin_api_key": mask_key(str(values["admin_api_key"])) if values.get("admin_api_key") else None,
            "data_dir": values.get("data_dir"),
        }
        for name, values in sorted(file.profiles.items())
    ]


@profile_app.command("list")
@handles_errors
def list_profiles(as_json: JsonOption = False) -> None:
    """List the profiles of the profile file: which is the default, which one this command would use."""
    rows = _profile_rows()
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} profiles in {load_profiles().path}")
    for column in ("Profile", "", "URL", "API key", "Admin key", "Data folder"):
        table.add_column(column)
    for row in rows:
        marker = ", ".join(word for word, on in (("default", row["default"]), ("in use", row["in_use"])) if on)
        add_text_row(
            table,
            as_text(row["name"], "bold" if row["in_use"] else ""),
            marker,
            row["url"] or "-",
            row["api_key"] or "-",
            row["admin_api_key"] or "-",
            row["data_dir"] or "-",
        )
    console.print(table)
    if not rows:
        console.print("No profiles yet: `aitbc serve` makes one on its first start on a data folder.")


@profile_app.command("use")
@handles_errors
def use(
    name: Annotated[str, typer.Argument(help="The profile that commands use from now on by default.")],
    as_json: JsonOption = False,
) -> None:
    """Make a profile the default (`--profile` and AITBC_PROFILE still choose another for one command)."""
    file = use_profile(name)
    if as_json:
        print_json({"default": name, "path": str(file.path)})
        return
    console.print(as_text(f"The default profile is now {name!r} ({file.profiles[name].get('url', '-')})."))
