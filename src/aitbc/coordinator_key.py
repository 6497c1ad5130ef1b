"""The coordinator's own Ed25519 key, which signs receipts: created once in the data folder (or read from the
file `coordinator_key_file` names, so that every replica signs with the same key), never sent anywhere.

A key file is not a use case: it lives beside the wiring, which hands it to the receipt service as its
`ReceiptSigner`; services may not import it (import-linter's layers)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from aitbc.domain.manifest import public_key_text
from aitbc.domain.receipts import key_id, sign_receipt


class CoordinatorKey:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = public_key_text(private_key)
        self.key_id = key_id(self.public_key)

    def sign(self, document: dict[str, Any]) -> str:
        return sign_receipt(self._private_key, document)


def _parse(path: Path, pem: bytes) -> CoordinatorKey:
    loaded = load_pem_private_key(pem, password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return CoordinatorKey(loaded)


def load_or_create_key(path: Path) -> CoordinatorKey:
    """Read the key at `path`, or create it there (owner-only) if there is none. Two processes starting at once
    agree on one key: the new key is written aside and linked into place only if nothing is there yet."""
    try:
        return _parse(path, path.read_bytes())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    aside = path.with_name(f".{path.name}.{secrets.token_hex(6)}.new")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(aside, path)
        except FileExistsError:
            return _parse(path, path.read_bytes())
    finally:
        aside.unlink(missing_ok=True)
    return CoordinatorKey(key)
