"""`--run-as USER`: run `command` jobs as an unprivileged user instead of the miner's own, so a job cannot
read the miner's private key or API key, signal the miner, or write outside the folders handed to it.

The miner (root) hands the job its working folder and an output folder, starts it through `setpriv` (new
uid/gid, no supplementary groups, no new privileges), and afterwards copies what the job left there into the
package itself: regular files only, opened without following symlinks, so nothing the job plants can make
the miner read or upload a file the job could not read itself. Jobs that run as the same user can still
see each other's folders while they run: give each miner its own user where that matters."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from aitbc.miner.runtimes.interface import RuntimeUnavailable

COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class JobUser:
    name: str
    uid: int
    gid: int

    @classmethod
    def resolve(cls, name: str) -> JobUser:
        if os.geteuid() != 0:
            raise RuntimeUnavailable("--run-as needs the miner to run as root (it switches user for each job)")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise RuntimeUnavailable(f"--run-as: there is no user {name!r} on this machine") from None
        if entry.pw_uid == 0:
            raise RuntimeUnavailable("--run-as must name an unprivileged user, not root")
        if shutil.which("setpriv") is None:
            raise RuntimeUnavailable("--run-as needs setpriv (util-linux) on PATH")
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid)

    def check_reachable(self, folder: Path) -> None:
        """Every folder above the jobs must be searchable by others, or the job could not reach its own."""
        for parent in (folder, *folder.parents):
            if not stat.S_IMODE(parent.stat().st_mode) & stat.S_IXOTH:
                raise RuntimeUnavailable(
                    f"--run-as {self.name}: {parent} is not searchable by other users, so jobs could not reach "
                    f"{folder}: pick a --work-dir outside it (e.g. /var/lib/aitbc-miner) or chmod o+x {parent}"
                )

    def wrap(self, argv: list[str]) -> list[str]:
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
            *argv,
        ]

    def hand_over(self, *folders: Path) -> None:
        """Give the job user these folders and everything in them (never following a symlink)."""
        for folder in folders:
            os.lchown(folder, self.uid, self.gid)
            folder.chmod(0o700)
            for root, subfolders, names in os.walk(folder, followlinks=False):
                for name in (*subfolders, *names):
                    os.lchown(Path(root) / name, self.uid, self.gid)


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
