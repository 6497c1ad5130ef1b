"""What the AI worker's sandbox holds: the system (as for any job), read-only the Python it runs on (the
interpreter's prefixes, the site-packages on `sys.path` — a venv may borrow another's through a `.pth` —
and our own package folder, never a source tree's root or the current folder), the model folders it
serves, the GPUs of the jobs it runs and no others (one set per worker: a job runs in a worker of its own
set), and one writable exchange folder at `/job`. No network, no state folder, no keys; the environment is
cleared and holds only what the libraries need to stay offline.

A root miner starts bwrap as root (so bwrap can reach a Python installed under `/root`, which the job user
cannot) without a user namespace, and the worker drops to the job user (e.g. `nobody`) with no capabilities
and no way back (`setpriv`, no new privileges) before it runs any Python: files it writes are the job user's.
Any other miner runs the worker as itself, in its own user namespace, like every other job."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import aitbc
from aitbc.miner.runtimes.interface import RuntimeUnavailable
from aitbc.miner.sandbox import (
    SYSTEM_FOLDERS,
    HostUser,
    Mount,
    SandboxSpec,
    bwrap_argv,
    gpu_devices,
    gpu_environment,
)
from aitbc.miner.worker.messages import EXCHANGE

WORKER_MODULE = "aitbc.miner.worker"
OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HOME": "/tmp/huggingface",  # noqa: S108 - the sandbox's own empty tmpfs
    "HOME": "/tmp",  # noqa: S108
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "TOKENIZERS_PARALLELISM": "false",
}
# The operator's thread settings for the math libraries, passed on as they are (they hold no secret).
THREAD_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# What bwrap_argv adds for a sandbox in its own user namespace, and the number of values each option takes.
USER_NAMESPACE_OPTIONS = {"--unshare-user": 0, "--disable-userns": 0, "--uid": 1, "--gid": 1, "--cap-drop": 1}


def python_folders() -> list[str]:
    """The folders the worker's Python needs, read-only, each once (none inside another, none of the system's)."""
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    candidates += [entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")]
    candidates.append(str(Path(aitbc.__file__).resolve().parent))  # an editable install: src/aitbc, not src/..
    return outermost([path for path in candidates if path and Path(path).is_dir()], SYSTEM_FOLDERS)


def outermost(paths: Sequence[str], covered: Sequence[str] = ()) -> list[str]:
    """`paths` without duplicates and without those inside another one, or inside one of `covered`."""
    chosen: list[str] = []
    for path in sorted({os.path.normpath(path) for path in paths}, key=len):
        if not any(_inside(path, other) for other in (*covered, *chosen)):
            chosen.append(path)
    return chosen


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def worker_spec(exchange: Path, models: Sequence[Path], gpus: Sequence[int], dev: Path = Path("/dev")) -> SandboxSpec:
    """A worker for jobs given GPUs `gpus` (host indices): their device nodes and the shared control nodes
    (those under `dev` that exist), CUDA told which they are; none at all, and no GPU for CUDA, when empty."""
    return SandboxSpec(
        argv=[sys.executable, "-I", "-m", WORKER_MODULE],
        mounts=[Mount(exchange, EXCHANGE, writable=True)],
        environment={
            **OFFLINE_ENVIRONMENT,
            **{name: os.environ[name] for name in THREAD_SETTINGS if name in os.environ},
            **gpu_environment(gpus),
        },
        cwd="/tmp",  # noqa: S108
        network=False,
        devices=gpu_devices(gpus, dev) if gpus else (),
        readonly_paths=outermost([*python_folders(), *(str(folder) for folder in models)], SYSTEM_FOLDERS),
    )


def _with_readable_parents(options: Sequence[str]) -> list[str]:
    """Root's bwrap makes the folders it creates above a bind target 0700 (root's): create them 0755 first, or
    the job user could not reach what is bound below them; a tmpfs hides what was made under it before, and
    keeps its own mode (so /tmp stays writable)."""
    arguments: list[str] = []
    made: set[str] = set()
    tmpfs: set[str] = set()
    for index, option in enumerate(options):
        if option == "--tmpfs" and index + 1 < len(options):
            tmpfs.add(options[index + 1])
            made = {path for path in made if not _inside(path, options[index + 1])}
        if option in ("--bind", "--ro-bind", "--dev-bind") and index + 2 < len(options):
            for parent in reversed(Path(options[index + 2]).parents):
                name = str(parent)
                if name != "/" and name not in made and name not in tmpfs:
                    arguments += ["--perms", "0755", "--dir", name]
                    made.add(name)
        arguments.append(option)
    return arguments


def worker_argv(spec: SandboxSpec, user: HostUser | None) -> list[str]:
    """The command line that starts the worker: `bwrap_argv` as it is for a miner that is not root; for a root
    miner, bwrap without a user namespace, the worker dropping to `user` on its way in."""
    argv = bwrap_argv(spec)
    if user is None:
        return argv
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
    if setpriv is None:
        raise RuntimeUnavailable("a root miner needs setpriv (util-linux) to start the AI worker as the job user")
    separator = argv.index("--")
    options, command = argv[:separator], argv[separator + 1 :]
    kept: list[str] = []
    index = 0
    while index < len(options):
        option = options[index]
        if option in USER_NAMESPACE_OPTIONS:
            index += 1 + USER_NAMESPACE_OPTIONS[option]
            continue
        if option == "--tmpfs":
            kept += ["--perms", "1777"]  # root's tmpfs: the job user must be able to write its /tmp
        kept.append(option)
        index += 1
    drop = [
        setpriv,
        f"--reuid={user.uid}",
        f"--regid={user.gid}",
        "--clear-groups",
        "--no-new-privs",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--",
    ]
    return [*_with_readable_parents(kept), "--", *drop, *command]
