"""The result package of one job on disk (DESIGN.md "Results"), and its signed manifest.

    package/
    ├── output.json      job metadata and status
    ├── result.txt       main output
    ├── logs/stdout.log
    ├── logs/stderr.log
    └── artifacts/       anything else the job wrote

Only regular files are packaged: a symlink a job left in artifacts/ is skipped, never followed, so a job
cannot make the miner upload files from outside its package.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.digests import sha256_file
from aitbc.domain.errors import InvalidInput
from aitbc.domain.manifest import PackagePaths, sign
from aitbc.protocol.miners import Manifest, ManifestFile

log = logging.getLogger(__name__)
# A failed job's message ends with the last lines of its stderr (`aitbc client status` shows them).
STDERR_TAIL_LINES = 10
STDERR_TAIL_LINE_CHARACTERS = 500
STDERR_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class PackageLayout:
    root: Path

    @property
    def output_json(self) -> Path:
        return self.root / "output.json"

    @property
    def result_file(self) -> Path:
        return self.root / "result.txt"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def stdout_log(self) -> Path:
        return self.logs_dir / "stdout.log"

    @property
    def stderr_log(self) -> Path:
        return self.logs_dir / "stderr.log"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    def create(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.stdout_log, self.stderr_log):
            path.touch()

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> list[str]:
        """The last `lines` lines of the job's stderr (each cut to `STDERR_TAIL_LINE_CHARACTERS`), read from the
        end of the file, however long it grew."""
        try:
            with self.stderr_log.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - STDERR_TAIL_BYTES))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return []
        found = [line.rstrip("\r") for line in text.splitlines() if line.strip()]
        if size > STDERR_TAIL_BYTES and found:
            found = found[1:]  # the first line read may have begun before the bytes read
        return [line[:STDERR_TAIL_LINE_CHARACTERS] for line in found[-lines:]]

    def write_output(self, document: dict[str, Any]) -> None:
        self.output_json.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")

    def files(self) -> list[tuple[str, Path]]:
        """(package path, file) for every regular file, sorted; symlinks, and names the coordinator would refuse
        (by the same `PackagePaths` rules it applies to the manifest), are left out."""
        candidates: list[tuple[str, Path]] = []
        for folder, subfolders, names in os.walk(self.root, followlinks=False):
            subfolders.sort()
            for name in names:
                path = Path(folder) / name
                relative = path.relative_to(self.root).as_posix()
                if not stat.S_ISREG(path.lstat().st_mode):
                    log.warning("leaving %s out of the package: not a regular file", relative)
                    continue
                candidates.append((relative, path))
        paths = PackagePaths()
        found: list[tuple[str, Path]] = []
        for relative, path in sorted(candidates):
            try:
                paths.add(relative)
            except InvalidInput as error:
                log.warning("leaving %r out of the package: %s", relative, error.message)
                continue
            found.append((relative, path))
        return found


def build_manifest(layout: PackageLayout, job_id: str, miner_id: str) -> Manifest:
    files = [
        ManifestFile(path=relative, size=path.stat().st_size, sha256=sha256_file(path))
        for relative, path in layout.files()
    ]
    return Manifest(job_id=job_id, miner_id=miner_id, files=files)


def sign_manifest(key: Ed25519PrivateKey, manifest: Manifest) -> str:
    return sign(key, manifest.model_dump(mode="json"))
