"""Copying what a job wrote out of its folder into the result package, as the miner (often root) does after
the job: regular files only, opened without following symlinks, so nothing the job plants can make the miner
read or upload a file the job could not read itself. (The host user jobs run as: `sandbox.HostUser`.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

COPY_CHUNK = 1024 * 1024


def copy_regular_file(source: Path, target: Path) -> bool:
    """Copy `source` if it is a regular file, refusing to follow a symlink at any moment (O_NOFOLLOW)."""
    try:
        descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(descriptor, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as writer:
            while chunk := reader.read(COPY_CHUNK):
                writer.write(chunk)
    return True


def copy_tree(source: Path, target: Path) -> None:
    """The regular files under `source`, copied to the same places under `target`; links are skipped."""
    for root, subfolders, names in os.walk(source, followlinks=False):
        subfolders[:] = [name for name in subfolders if not (Path(root) / name).is_symlink()]
        for name in names:
            path = Path(root) / name
            copy_regular_file(path, target / path.relative_to(source))
