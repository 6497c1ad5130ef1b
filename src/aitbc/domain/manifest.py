"""Result packages: which paths a package may hold, the canonical bytes of a manifest, Ed25519 signatures."""

from __future__ import annotations

import base64
import hashlib
import json
import unicodedata
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from aitbc.domain.errors import InvalidInput

PACKAGE_TOP_LEVEL = ("output.json", "result.txt", "logs/stdout.log", "logs/stderr.log")
MAX_PATH_LENGTH = 500


# Characters no path may hold: controls (C0, C1 with U+0085), format characters (bidi controls U+202A-U+202E
# and U+2066-U+2069, zero-width ones, the BOM), surrogates, and line and paragraph separators (U+2028,
# U+2029). Each either splits a line where `sha256sum -c` and `str.splitlines` see two, or shows a name
# other than the one on disk.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def check_package_path(path: str) -> str:
    """Refuse anything that could escape the package folder or be misread: absolute paths, `..`, backslashes,
    empty or dot segments, control, format and separator characters; allow the fixed files, `logs/…` and
    `artifacts/…`."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidInput(f"invalid result path {path[:80]!r}: empty or too long")
    if path.startswith("/") or "\\" in path or ":" in path.split("/")[0]:
        raise InvalidInput(f"invalid result path {path!r}: must be relative, with forward slashes")
    if any(unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in path):
        raise InvalidInput(
            f"invalid result path {path!r}: control, format (bidi, zero-width) or line-separator characters"
        )
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise InvalidInput(f"invalid result path {path!r}: empty, '.' or '..' segments")
    if path in PACKAGE_TOP_LEVEL or (len(segments) >= 2 and segments[0] in ("artifacts", "logs")):
        return path
    raise InvalidInput(f"invalid result path {path!r}: a package holds output.json, result.txt, logs/… and artifacts/…")


class PackagePaths:
    """The paths of one package, each checked by `check_package_path` and against those already in it: no path
    twice, none that differs from another only by case, and no file that is also a folder (`artifacts/dir`
    and `artifacts/dir/sub`): a package must unpack into the same files on every file system."""

    def __init__(self) -> None:
        self._files: dict[str, str] = {}
        self._folders: dict[str, str] = {}

    def add(self, path: str) -> str:
        clean = check_package_path(path)
        key = clean.casefold()
        if key in self._files:
            raise InvalidInput(f"the package lists {clean} twice (or also as {self._files[key]})")
        if key in self._folders:
            raise InvalidInput(f"{clean} is a file, but {self._folders[key]} puts files under it")
        parts = key.split("/")
        folders = ["/".join(parts[:end]) for end in range(1, len(parts))]
        for folder in folders:
            if folder in self._files:
                raise InvalidInput(f"{clean} puts a file under {self._files[folder]}, which is a file")
        self._files[key] = clean
        for folder in folders:
            self._folders.setdefault(folder, clean)
        return clean


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
