"""The peers' own virtual environments (`bench/.venv-peers/<peer>`, git-ignored), made from PyPI at pinned
versions, one per peer: arq pins redis below 6 while Celery's Redis transport needs 6.1 or later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / ".venv-peers"
PINS: dict[str, list[str]] = {
    "arq": ["arq==0.28.0", "redis[hiredis]==5.3.1"],
    "celery": ["celery[redis]==5.7.0", "redis==8.1.0"],
    "rq": ["rq==2.12.0", "redis==8.1.0"],
    "pgqueuer": ["pgqueuer==1.6.0", "asyncpg==0.32.0", "psycopg[binary]==3.3.9", "redis==8.1.0"],
    "procrastinate": ["procrastinate==3.10.0", "psycopg[binary,pool]==3.3.9", "redis==8.1.0"],
}
PEERS = list(PINS)
POSTGRES_PEERS = {"pgqueuer", "procrastinate"}


def python_of(peer: str) -> Path:
    return ROOT / peer / "bin" / "python"


def ensure(peer: str) -> Path:
    """The peer's Python, its environment made or remade when the pins changed."""
    folder = ROOT / peer
    stamp = folder / "bench-pins.txt"
    wanted = "\n".join(PINS[peer]) + "\n"
    if stamp.exists() and stamp.read_text() == wanted and python_of(peer).exists():
        return python_of(peer)
    print(f"installing {peer} into {folder} ({', '.join(PINS[peer])})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    subprocess.run(
        [str(python_of(peer)), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS[peer]],
        check=True,
    )
    stamp.write_text(wanted)
    return python_of(peer)
