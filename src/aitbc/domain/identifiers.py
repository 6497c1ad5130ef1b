"""Identifiers and secrets: prefixed, random, unguessable."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits
_ID_LENGTH = 20


def _random_suffix(length: int = _ID_LENGTH) -> str:
    """`length` base-36 digits of one uniform draw (one read of the system's randomness, not one a digit)."""
    number = secrets.randbelow(len(_ALPHABET) ** length)
    digits = []
    for _ in range(length):
        number, digit = divmod(number, len(_ALPHABET))
        digits.append(_ALPHABET[digit])
    return "".join(digits)


def new_id(prefix: str) -> str:
    """A fresh id like ``job_3k9x…`` (20 random lowercase letters and digits, ~103 bits)."""
    return f"{prefix}_{_random_suffix()}"


def new_job_id() -> str:
    return new_id("job")


def new_miner_id() -> str:
    return new_id("miner")


def new_lease_id() -> str:
    return new_id("lease")


def new_file_id() -> str:
    return new_id("file")


def new_account_id() -> str:
    return new_id("acct")


def new_key_id() -> str:
    return new_id("key")


def new_api_key() -> str:
    """A secret API key; only its hash is ever stored."""
    return "aitbc_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """Keys and tokens carry 256 random bits, so a plain SHA-256 is a safe one-way store."""
    return hashlib.sha256(secret.encode()).hexdigest()


_ID_PATTERN = re.compile(r"^[a-z]+_[a-z0-9]{16,64}$")


def looks_like_id(value: str, prefix: str) -> bool:
    return value.startswith(prefix + "_") and bool(_ID_PATTERN.match(value))
