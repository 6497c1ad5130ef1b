"""What `aitbc serve` tells about the CLI profile: where a first start stored its keys, whether that profile is
the default, and how to use it when it is not."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from aitbc.cli.common import as_text, console
from aitbc.sdk.config import profile_path
from aitbc.sdk.profiles import Origin, pointing_at, save_coordinator_keys
from aitbc.settings import Settings


def coordinator_origin(settings: Settings) -> tuple[Origin, str]:
    """Where this coordinator's keys live, and the name a new profile for it would be made of: the data
    folder's, or on PostgreSQL the database's (its URL kept without the password)."""
    data_dir = str(settings.data_dir.expanduser().resolve())
    if not settings.database_url:
        return Origin(data_dir), settings.data_dir.expanduser().resolve().name
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    return Origin(data_dir, url.render_as_string(hide_password=True)), url.database or "postgresql"


def announce_saved(keys: dict[str, str], origin: Origin, label: str, asked: str | None) -> None:
    saved = save_coordinator_keys(keys, origin, label, asked)
    path = saved.file.path
    if saved.replaced_elsewhere is not None:
        before = (
            saved.replaced_elsewhere.get("data_dir") or saved.replaced_elsewhere.get("url") or "another coordinator"
        )
        console.print(as_text(f"The profile {saved.name!r} pointed at {before}; it now holds this coordinator's keys."))
    if saved.is_default:
        console.print(
            as_text(
                f"Saved to the CLI profile {saved.name!r} (the default) in {path} (readable by you only); "
                "`aitbc client …` works here with no set-up. They are not written to the server log."
            )
        )
        return
    default = saved.file.default_name()
    where = saved.file.profiles.get(default or "", {})
    console.print(
        Text.assemble(
            as_text(
                f"Saved to the CLI profile {saved.name!r} in {path} (readable by you only; not in the server log). "
            ),
            as_text(f"The default profile is still {default!r} ({where.get('data_dir') or where.get('url', '?')}): "),
            as_text(f"use `aitbc --profile {saved.name} client …` or make it the default: "),
            as_text(f"`aitbc profile use {saved.name}`.", "bold"),
        )
    )


def announce_existing(data_dir: Path, origin: Origin) -> None:
    name = pointing_at(origin)
    profile = f"CLI profile {name!r} in {profile_path()}" if name else f"no CLI profile in {profile_path()} records it"
    console.print(as_text(f"Using the data in {data_dir} ({profile})."))
