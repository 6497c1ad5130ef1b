"""Owner-only folders and files (0700 / 0600) for what the coordinator keeps on disk: its database, blobs and
signing key hold every tenant's data, and under the usual umask 022 they would be readable by every user of
the machine. Modes are set explicitly, so they hold whatever the umask of the process that writes them."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

PRIVATE_FOLDER_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

log = logging.getLogger(__name__)


def make_private_folders(path: Path) -> None:
    """Create `path` and its missing parents, each one 0700 (`Path.mkdir(parents=True)` would give the parents
    the umask's mode). Folders that exist already are left as they are."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by a concurrent writer
            folder.mkdir(mode=PRIVATE_FOLDER_MODE)
            os.chmod(folder, PRIVATE_FOLDER_MODE)  # mkdir's mode passes through the umask


def private_folder(path: Path) -> Path:
    """`path` as an owner-only folder: created if missing, and an existing one closed to others."""
    make_private_folders(path)
    restrict(path, PRIVATE_FOLDER_MODE)
    return path


def private_file(path: Path) -> Path:
    """`path` as an owner-only file: created empty if missing (so whatever fills it later, such as SQLite, finds
    the mode already set), and an existing one closed to others."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
    os.close(descriptor)
    restrict(path, PRIVATE_FILE_MODE)
    return path


def open_private(path: str, flags: int) -> int:
    """An `opener` for `open()`: a file it creates is 0600 from its first byte."""
    return os.open(path, flags, PRIVATE_FILE_MODE)


def restrict(path: Path, mode: int) -> None:
    """Close an existing `path` to others; a missing one is left missing, another user's is reported."""
    try:
        if path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        return
    except PermissionError:
        log.warning("cannot make %s owner-only (mode %o): it belongs to another user", path, mode)
