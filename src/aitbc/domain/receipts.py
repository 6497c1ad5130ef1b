"""Receipts: the coordinator's signed statement of what a job produced and what it cost, and the checks a
client runs offline on a receipt, the miner's manifest it names, and a copy of the files.

Trust flows in one line: the pinned coordinator key signs the receipt; the receipt names the miner's key,
the manifest's hash and the miner's signature over the manifest; the manifest names every file's size and
sha256. Each link is checked on its own so a failure names the link that broke.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.clock import isoformat_z
from aitbc.domain.manifest import digest, sign, verify

RECEIPT_TYPE = "aitbc.receipt"
RECEIPT_VERSION = 1


def key_id(public_key: str) -> str:
    """A short stable name for an Ed25519 public key (base64 raw): the first 16 hex digits of its sha256."""
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:16]


def _safe_key_id(public_key: str) -> str:
    try:
        return key_id(public_key)
    except ValueError:
        return "(malformed key)"


@dataclass(frozen=True)
class ReceiptFacts:
    """Everything a receipt states, gathered by the results service from the job and its stored result."""

    job_id: str
    account_id: str
    miner_id: str
    miner_public_key: str
    status: str
    partial: bool
    failure_reason: str | None
    exit_code: int | None
    manifest_sha256: str
    miner_signature: str
    file_count: int
    total_bytes: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    gpu_type: str | None
    gpu_count: int
    attempts: int
    charge: Mapping[str, Any] | None
    usage: Mapping[str, Any] | None = None
    timings: Mapping[str, Any] | None = None


def receipt_document(facts: ReceiptFacts, issued_at: datetime, coordinator_key_id: str) -> dict[str, Any]:
    wall_seconds = None
    if facts.started_at is not None and facts.completed_at is not None:
        wall_seconds = round(max(0.0, (facts.completed_at - facts.started_at).total_seconds()), 3)
    return {
        "type": RECEIPT_TYPE,
        "version": RECEIPT_VERSION,
        "job_id": facts.job_id,
        "account_id": facts.account_id,
        "miner_id": facts.miner_id,
        "miner_public_key": facts.miner_public_key,
        "status": facts.status,
        "partial": facts.partial,
        "failure_reason": facts.failure_reason,
        "exit_code": facts.exit_code,
        "manifest_sha256": facts.manifest_sha256,
        "miner_signature": facts.miner_signature,
        "files": facts.file_count,
        "total_bytes": facts.total_bytes,
        "created_at": isoformat_z(facts.created_at),
        "started_at": isoformat_z(facts.started_at),
        "completed_at": isoformat_z(facts.completed_at),
        "issued_at": isoformat_z(issued_at),
        "resources": {
            "wall_seconds": wall_seconds,
            "gpu_type": facts.gpu_type,
            "gpu_count": facts.gpu_count,
            "attempts": facts.attempts,
            "reported_by_miner": dict(facts.usage) if facts.usage else None,
            # How the job's time on the miner went (setup, model load, run, upload), as the miner reported it;
            # receipts signed before it was recorded have no such key, and verify as they always did.
            "timings": dict(facts.timings) if facts.timings else None,
        },
        # Settled by billing; None until the job's charge is known.
        "charge": dict(facts.charge) if facts.charge is not None else None,
        "coordinator_key_id": coordinator_key_id,
    }


def sign_receipt(private_key: Ed25519PrivateKey, document: dict[str, Any]) -> str:
    return sign(private_key, document)


@dataclass(frozen=True)
class Check:
    """One link of the chain of trust: what was checked, whether it held, and why not."""

    name: str
    ok: bool
    detail: str


def check_receipt(
    document: Mapping[str, Any], signature: str, coordinator_public_key: str, manifest: Mapping[str, Any]
) -> list[Check]:
    """The signatures and hashes of a receipt and its manifest, each as its own check."""
    receipt = dict(document)
    manifest_document = dict(manifest)
    signed = verify(coordinator_public_key, receipt, signature)
    checks = [
        Check(
            "coordinator signature",
            signed,
            f"{'valid' if signed else 'does not verify'} with coordinator key {_safe_key_id(coordinator_public_key)}",
        ),
        Check(
            "receipt type",
            receipt.get("type") == RECEIPT_TYPE and receipt.get("version") == RECEIPT_VERSION,
            f"{receipt.get('type')} version {receipt.get('version')}",
        ),
    ]
    actual = digest(manifest_document)
    same_hash = actual == receipt.get("manifest_sha256")
    checks.append(
        Check(
            "manifest hash",
            same_hash,
            f"sha256 {actual[:16]}… as the receipt says"
            if same_hash
            else f"sha256 of the manifest is {actual}; the receipt says {receipt.get('manifest_sha256')}",
        )
    )
    same_job = manifest_document.get("job_id") == receipt.get("job_id")
    same_miner = manifest_document.get("miner_id") == receipt.get("miner_id")
    checks.append(
        Check(
            "manifest names the job and miner",
            same_job and same_miner,
            f"{receipt.get('job_id')} by {receipt.get('miner_id')}"
            if same_job and same_miner
            else f"manifest: {manifest_document.get('job_id')} by {manifest_document.get('miner_id')}; "
            f"receipt: {receipt.get('job_id')} by {receipt.get('miner_id')}",
        )
    )
    miner_key = str(receipt.get("miner_public_key") or "")
    miner_signed = bool(miner_key) and verify(miner_key, manifest_document, str(receipt.get("miner_signature") or ""))
    checks.append(
        Check(
            "miner signature",
            miner_signed,
            f"{'valid' if miner_signed else 'does not verify'} with the key of {receipt.get('miner_id')}",
        )
    )
    return checks


@dataclass(frozen=True)
class FoundFile:
    size: int
    sha256: str


def check_files(manifest: Mapping[str, Any], found: Mapping[str, FoundFile], ignored: frozenset[str]) -> list[Check]:
    """Every manifest file present with its size and sha256, and no file the manifest does not name."""
    checks: list[Check] = []
    listed: set[str] = set()
    for entry in manifest.get("files", []):
        path = str(entry["path"])
        listed.add(path)
        have = found.get(path)
        if have is None:
            checks.append(Check(f"file {path}", False, "missing"))
        elif have.size != entry["size"]:
            checks.append(Check(f"file {path}", False, f"{have.size} bytes; the manifest says {entry['size']}"))
        elif have.sha256 != entry["sha256"]:
            checks.append(Check(f"file {path}", False, f"sha256 {have.sha256}; the manifest says {entry['sha256']}"))
        else:
            checks.append(Check(f"file {path}", True, f"{have.size} bytes, sha256 {have.sha256[:16]}…"))
    for path in sorted(set(found) - listed - ignored):
        checks.append(Check(f"file {path}", False, "not in the manifest"))
    return checks
