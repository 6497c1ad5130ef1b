"""The exchange folder of one AI worker: bound writable at `/job` in its sandbox for the worker's whole life,
its content replaced per job. The worker may write only `output/`; the folder itself and `input/` are the
miner's, so the worker cannot swap either for a link that would send the miner's writes elsewhere.

Per job the miner empties it, writes the job's input files into `input/` (new files only, never through a
link), lets the worker write `output/`, reads what it needs from there (regular files only, opened without
following a link), and empties it again: no file of one job is there for the next."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from aitbc.domain.job import FailureReason
from aitbc.miner.runtimes.interface import JobFailed
from aitbc.miner.runtimes.job_user import copy_regular_file
from aitbc.miner.sandbox import HostUser
from aitbc.miner.worker.messages import INPUT_FOLDER, OUTPUT_FOLDER, file_name


class ExchangeFolders:
    """Where one runtime's workers' exchange folders live: a folder of the miner's own (0700). bwrap binds each
    at /job before the worker drops to the job user, so that user never needs to reach it from outside."""

    def __init__(self, base: Path, user: HostUser | None) -> None:
        self.base = base
        self.user = user

    @classmethod
    def at(cls, base: Path, user: HostUser | None) -> ExchangeFolders:
        """Created, with what a previous run of the miner left there removed."""
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o700)
        for leftover in base.iterdir():
            _remove(leftover)
        return cls(base, user)

    def create(self) -> ExchangeFolder:
        folder = self.base / secrets.token_hex(16)
        folder.mkdir(mode=0o700)
        if self.user is not None:
            folder.chmod(0o755)  # the job user enters it at /job, and may write only output/
        return ExchangeFolder(folder, self.user)


class ExchangeFolder:
    def __init__(self, path: Path, user: HostUser | None) -> None:
        self.path = path
        self.user = user

    @property
    def output(self) -> Path:
        return self.path / OUTPUT_FOLDER

    def entries(self) -> list[str]:
        return sorted(os.listdir(self.path))

    def clear(self) -> bool:
        """Empty it; False when that was not possible (then the worker is not used again)."""
        try:
            for name in os.listdir(self.path):
                _remove(self.path / name)
            return not os.listdir(self.path)
        except OSError:
            return False

    def prepare(self) -> bool:
        """Empty, with `input/` (the miner's, readable) and `output/` (the job user's) for the next job."""
        if not self.clear():
            return False
        (self.path / INPUT_FOLDER).mkdir(mode=0o755 if self.user is not None else 0o700)
        self.output.mkdir(mode=0o700)
        if self.user is not None:
            os.chown(self.output, self.user.uid, self.user.gid, follow_symlinks=False)
        return True

    def put(self, name: str, content: bytes) -> None:
        """A new input file (never through a link, never over an existing file), readable by the worker."""
        folder = os.open(self.path / INPUT_FOLDER, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            descriptor = os.open(
                file_name(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=folder
            )
        finally:
            os.close(folder)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)

    @contextlib.contextmanager
    def open_output(self, name: str, worker: str) -> Iterator[BinaryIO]:
        """A file the worker wrote, opened without following a link; JobFailed when it is not a regular file."""
        try:
            descriptor = os.open(self.output / file_name(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as error:
            raise JobFailed(
                f"the {worker} worker wrote no {name}: {error.strerror}", FailureReason.RUNTIME_ERROR
            ) from None
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise JobFailed(f"the {worker} worker's {name} is not a file", FailureReason.RUNTIME_ERROR)
            yield handle

    def copy_output(self, name: str, target: Path) -> bool:
        return copy_regular_file(self.output / file_name(name), target)

    def remove(self) -> None:
        _remove(self.path)


def _remove(path: Path) -> None:
    """Remove what a worker left. `shutil.rmtree` works on file descriptors and never follows a link; a miner
    that is not root first gives back write access to folders the worker made read-only (the worker runs as
    the miner's own user then), opening each without following a link."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    if os.geteuid() != 0:
        for root, _, _ in os.walk(path, followlinks=False):
            with contextlib.suppress(OSError):
                descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                try:
                    os.fchmod(descriptor, 0o700)
                finally:
                    os.close(descriptor)
    shutil.rmtree(path, ignore_errors=True)
