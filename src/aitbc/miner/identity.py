"""The miner's Ed25519 key pair: created in its state folder on first start, reused after, so its signed
manifests stay verifiable against the public key it registered."""

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


def load_or_create_key(state_dir: Path) -> Ed25519PrivateKey:
    """Read the key pair from `state_dir`, or create it there (private key readable by its owner only)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / KEY_FILE
    if path.exists():
        loaded = load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return loaded
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    temporary.replace(path)
    (state_dir / PUBLIC_KEY_FILE).write_text(public_key_text(key) + "\n")
    return key
