"""The miner's Ed25519 key pair: created in its state folder on first start, reused after, so its signed
manifests stay verifiable against the public key it registered. And how the miner writes anything private
(keys, assignments with their lease ids and inline inputs): owner-only files in owner-only folders."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from aitbc.domain.manifest import public_key_text

KEY_FILE = "miner_ed25519.pem"
PUBLIC_KEY_FILE = "miner_ed25519.pub"


def private_folder(folder: Path) -> Path:
    """`folder`, made if missing, that only the miner's user can enter (0700)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def write_private(path: Path, data: str | bytes) -> None:
    """Write `path` whole (through a temporary file and a rename), readable by its owner only (0600)."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    os.chmod(temporary, 0o600)  # an old temporary file keeps its mode through O_TRUNC
    temporary.replace(path)


def load_or_create_key(state_dir: Path) -> Ed25519PrivateKey:
    """Read the key pair from `state_dir`, or create it there (both files readable by their owner only)."""
    private_folder(state_dir)
    path = state_dir / KEY_FILE
    if path.exists():
        loaded = load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return loaded
    key = Ed25519PrivateKey.generate()
    write_private(path, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    write_private(state_dir / PUBLIC_KEY_FILE, public_key_text(key) + "\n")
    return key
