"""Where to connect and with which key: explicit values, then AITBC_URL / AITBC_API_KEY, then the profile
file (`AITBC_CONFIG`, default ~/.config/aitbc/profile.json)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


def profile_path() -> Path:
    configured = os.environ.get("AITBC_CONFIG")
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "aitbc" / "profile.json"


def read_profile(path: Path | None = None) -> dict[str, Any]:
    path = path or profile_path()
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the profile {path}: {error}") from error
    return loaded if isinstance(loaded, dict) else {}


def write_profile(values: dict[str, Any], path: Path | None = None) -> Path:
    """Merge `values` into the profile, which holds a secret: readable by its owner only."""
    path = path or profile_path()
    merged = {**read_profile(path), **values}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.touch(mode=0o600)
    temporary.write_text(json.dumps(merged, indent=2) + "\n")
    temporary.chmod(0o600)
    temporary.replace(path)
    return path


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str | None


def resolve_connection(url: str | None = None, api_key: str | None = None) -> Connection:
    profile = read_profile()
    resolved_url = url or os.environ.get("AITBC_URL") or profile.get("url") or DEFAULT_URL
    resolved_key = api_key or os.environ.get("AITBC_API_KEY") or profile.get("api_key")
    return Connection(url=str(resolved_url).rstrip("/"), api_key=resolved_key)
