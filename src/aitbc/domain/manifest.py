"""Result packages: which paths a package may hold, the canonical bytes of a manifest, Ed25519 signatures."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from aitbc.domain.errors import InvalidInput

PACKAGE_TOP_LEVEL = ("output.json", "result.txt", "logs/stdout.log", "logs/stderr.log")
MAX_PATH_LENGTH = 500


def check_package_path(path: str) -> str:
    """Refuse anything that could escape the package folder or collide: absolute paths, `..`, backslashes,
    empty or dot segments, control characters; allow the fixed files, `logs/…` and `artifacts/…`."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidInput(f"invalid result path {path[:80]!r}: empty or too long")
    if path.startswith("/") or "\\" in path or ":" in path.split("/")[0]:
        raise InvalidInput(f"invalid result path {path!r}: must be relative, with forward slashes")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise InvalidInput(f"invalid result path {path!r}: control characters")
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise InvalidInput(f"invalid result path {path!r}: empty, '.' or '..' segments")
    if path in PACKAGE_TOP_LEVEL or (len(segments) >= 2 and segments[0] in ("artifacts", "logs")):
        return path
    raise InvalidInput(f"invalid result path {path!r}: a package holds output.json, result.txt, logs/… and artifacts/…")


def canonical_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(document)).hexdigest()


def public_key_text(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as error:
        raise InvalidInput("public key must be a base64 raw Ed25519 key (32 bytes)") from error


def sign(private_key: Ed25519PrivateKey, document: dict[str, Any]) -> str:
    return base64.b64encode(private_key.sign(canonical_bytes(document))).decode()


def verify(public_key: str, document: dict[str, Any], signature: str) -> bool:
    try:
        load_public_key(public_key).verify(base64.b64decode(signature, validate=True), canonical_bytes(document))
    except (InvalidSignature, ValueError, InvalidInput):
        return False
    return True
