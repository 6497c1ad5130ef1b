"""The agent's parts on their own: GPU specs, the key pair, the package and its manifest, backoff."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from aitbc.domain.manifest import public_key_text, verify
from aitbc.domain.matching import Gpu
from aitbc.miner.backoff import Backoff
from aitbc.miner.gpus import parse_gpu_spec, parse_nvidia_smi, resolve_gpus
from aitbc.miner.identity import KEY_FILE, PUBLIC_KEY_FILE, load_or_create_key
from aitbc.miner.package import PackageLayout, build_manifest, sign_manifest


def test_gpu_specs_declare_gpus_by_hand() -> None:
    assert parse_gpu_spec("a100:80x2") == [Gpu("a100", 80.0), Gpu("a100", 80.0)]
    assert parse_gpu_spec("rtx3090:24, t4") == [Gpu("rtx3090", 24.0), Gpu("t4", 0.0)]
    assert resolve_gpus("none") == []
    with pytest.raises(ValueError, match="MODEL"):
        parse_gpu_spec("a100:lots")
    with pytest.raises(ValueError, match="between 1 and 64"):
        parse_gpu_spec("a100:80x0")


def test_nvidia_smi_output_is_read_in_gigabytes() -> None:
    output = "NVIDIA A100-SXM4-80GB, 81920\nNVIDIA GeForce RTX 3090, 24576\n"
    assert parse_nvidia_smi(output) == [Gpu("NVIDIA A100-SXM4-80GB", 80.0), Gpu("NVIDIA GeForce RTX 3090", 24.0)]


def test_the_key_pair_is_created_once_and_kept_private(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path / "state")
    again = load_or_create_key(tmp_path / "state")
    assert public_key_text(first) == public_key_text(again)
    assert stat.S_IMODE((tmp_path / "state" / KEY_FILE).stat().st_mode) == 0o600
    assert (tmp_path / "state" / PUBLIC_KEY_FILE).read_text().strip() == public_key_text(first)


def test_the_manifest_lists_regular_files_only_and_its_signature_verifies(tmp_path: Path) -> None:
    layout = PackageLayout(tmp_path / "package")
    layout.create()
    layout.result_file.write_text("answer\n")
    layout.write_output({"job_id": "job_x", "status": "completed"})
    (layout.artifacts_dir / "deep" / "er").mkdir(parents=True)
    (layout.artifacts_dir / "deep" / "er" / "model.bin").write_bytes(b"\x00" * 1000)
    secret = tmp_path / "secret.txt"
    secret.write_text("host file")
    os.symlink(secret, layout.artifacts_dir / "stolen.txt")  # a job must not make the miner upload this
    os.mkfifo(layout.artifacts_dir / "pipe")

    manifest = build_manifest(layout, "job_x", "miner_y")
    paths = [entry.path for entry in manifest.files]
    assert paths == [
        "artifacts/deep/er/model.bin",
        "logs/stderr.log",
        "logs/stdout.log",
        "output.json",
        "result.txt",
    ]
    model = next(entry for entry in manifest.files if entry.path.endswith("model.bin"))
    assert (model.size, model.sha256) == (1000, hashlib.sha256(b"\x00" * 1000).hexdigest())

    key = load_or_create_key(tmp_path / "state")
    signature = sign_manifest(key, manifest)
    assert verify(public_key_text(key), manifest.model_dump(mode="json"), signature)


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(first=0.1, factor=2, cap=1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays[0] <= 0.125
    assert all(delay <= 1.25 for delay in delays)
    assert delays[-1] >= 0.75
    backoff.reset()
    assert backoff.next_delay() <= 0.125
