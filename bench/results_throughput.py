"""Results throughput: upload a large artifact through a running coordinator as a miner does, download it as
a client does (the zip, then the single file), and report the throughput and the coordinator's peak memory.

    .venv/bin/python bench/results_throughput.py                    # starts `aitbc serve` for 64M and for 1G
    .venv/bin/python bench/results_throughput.py --sizes 1G
    .venv/bin/python bench/results_throughput.py --url http://127.0.0.1:8000 --pid PID \
        --client-key aitbc_… --miner-key aitbc_… --sizes 1G        # against a coordinator already running

Memory is the coordinator's VmHWM (peak resident set) from /proc: every size runs on a fresh coordinator, so
the peaks compare directly. Streams stay streams: the peak must not grow with the artifact's size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.manifest import public_key_text, sign

CHUNK = 1024 * 1024
AITBC = str(Path(sys.executable).with_name("aitbc"))
UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str) -> int:
    text = text.strip().upper()
    if text[-1] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


def memory_kib(pid: int, field: str) -> int:
    """VmHWM (peak) or VmRSS (now) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Coordinator:
    url: str
    pid: int
    client_key: str
    miner_key: str
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


def start_coordinator(folder: Path) -> Coordinator:
    env = {**os.environ, "AITBC_CONFIG": str(folder / "profile.json")}
    data_dir = folder / "data"
    port = free_port()
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen(
        [AITBC, "serve", "--port", str(port), "--data-dir", str(data_dir), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("aitbc serve did not start; see " + str(folder / "serve.log"))
        time.sleep(0.1)

    def key(name: str, role: str) -> str:
        made = subprocess.run(
            [AITBC, "admin", "keys", "create", "--name", name, "--role", role, "--data-dir", str(data_dir), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        secret: str = json.loads(made.stdout)["api_key"]
        return secret

    return Coordinator(url, process.pid, key("bench-client", "client"), key("bench-farm", "miner"), process)


def artifact(size: int, digest: Any) -> Iterator[bytes]:
    """`size` bytes made from one random MiB, hashed as they are produced (never held whole)."""
    block = os.urandom(CHUNK)
    sent = 0
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        digest.update(piece)
        sent += len(piece)
        yield piece


def timed_download(http: httpx.Client, path: str, headers: dict[str, str]) -> tuple[float, int, str]:
    digest = hashlib.sha256()
    received = 0
    began = time.perf_counter()
    with http.stream("GET", path, headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(CHUNK):
            digest.update(chunk)
            received += len(chunk)
    return time.perf_counter() - began, received, digest.hexdigest()


def resumed_sha256(http: httpx.Client, path: str, headers: dict[str, str]) -> str:
    """Download in two parts as an interrupted, resumed download does (Range + If-Range); hash the whole."""
    digest = hashlib.sha256()
    with http.stream("GET", path, headers=headers) as first:
        first.raise_for_status()
        etag, size = first.headers["etag"], int(first.headers["content-length"])
        received = 0
        for chunk in first.iter_bytes(CHUNK):
            digest.update(chunk)
            received += len(chunk)
            if received >= size // 2:
                break  # the connection drops here
    resume = {**headers, "Range": f"bytes={received}-", "If-Range": etag}
    with http.stream("GET", path, headers=resume) as rest:
        assert rest.status_code == 206, rest.status_code
        for chunk in rest.iter_bytes(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def run(coordinator: Coordinator, size: int) -> dict[str, Any]:
    client = {"X-Api-Key": coordinator.client_key}
    miner = {"X-Api-Key": coordinator.miner_key}
    key = Ed25519PrivateKey.generate()
    timeout = httpx.Timeout(600.0)
    report: dict[str, Any] = {"size_bytes": size, "rss_start_kib": memory_kib(coordinator.pid, "VmHWM")}
    with httpx.Client(base_url=coordinator.url, timeout=timeout) as http:
        registered = http.post(
            "/v1/miners/register",
            json={"name": "bench-miner", "runtimes": ["command"], "public_key": public_key_text(key)},
            headers=miner,
        )
        registered.raise_for_status()
        miner_id = registered.json()["miner_id"]
        job_id = http.post("/v1/jobs", json={"type": "command", "input": "bench"}, headers=client).json()["job_id"]
        claimed = http.post(f"/v1/miners/{miner_id}/claim", json={"wait_seconds": 5}, headers=miner).json()["jobs"]
        lease_id = next(j["lease_id"] for j in claimed if j["job_id"] == job_id)
        http.post(f"/v1/miners/{miner_id}/jobs/{job_id}/start", json={"lease_id": lease_id}, headers=miner)

        digest = hashlib.sha256()
        began = time.perf_counter()
        uploaded = http.put(
            f"/v1/miners/{miner_id}/jobs/{job_id}/files/artifacts/big.bin",
            content=artifact(size, digest),
            headers={**miner, "X-Lease-Id": lease_id, "Content-Type": "application/octet-stream"},
        )
        uploaded.raise_for_status()
        report["upload_seconds"] = time.perf_counter() - began
        sha256 = digest.hexdigest()
        assert uploaded.json()["sha256"] == sha256, "the coordinator stored other bytes"
        manifest = {
            "job_id": job_id,
            "miner_id": miner_id,
            "files": [{"path": "artifacts/big.bin", "size": size, "sha256": sha256}],
        }
        finish = {"lease_id": lease_id, "manifest": manifest, "signature": sign(key, manifest), "exit_code": 0}
        http.post(f"/v1/miners/{miner_id}/jobs/{job_id}/complete", json=finish, headers=miner).raise_for_status()
        report["rss_after_upload_kib"] = memory_kib(coordinator.pid, "VmHWM")

        seconds, received, _ = timed_download(http, f"/v1/jobs/{job_id}/download", client)
        report["zip_first_seconds"] = seconds  # no CRC-32 pass: it was computed during the upload
        report["zip_bytes"] = received
        seconds, _, _ = timed_download(http, f"/v1/jobs/{job_id}/download", client)
        report["zip_seconds"] = seconds
        seconds, received, got = timed_download(http, f"/v1/jobs/{job_id}/files/artifacts/big.bin", client)
        assert received == size and got == sha256, "the downloaded file differs from the uploaded one"
        report["file_seconds"] = seconds
        report["resumed_sha256_matches"] = (
            resumed_sha256(http, f"/v1/jobs/{job_id}/files/artifacts/big.bin", client) == sha256
        )
        report["rss_peak_kib"] = memory_kib(coordinator.pid, "VmHWM")
    mib = size / 1024**2
    report["upload_mib_s"] = mib / report["upload_seconds"]
    report["zip_first_mib_s"] = mib / report["zip_first_seconds"]
    report["zip_mib_s"] = mib / report["zip_seconds"]
    report["file_mib_s"] = mib / report["file_seconds"]
    return report


def print_report(report: dict[str, Any]) -> None:
    size = report["size_bytes"] / 1024**2
    print(
        f"{size:8.0f} MiB  upload {report['upload_mib_s']:7.1f} MiB/s | zip first {report['zip_first_mib_s']:7.1f} "
        f"MiB/s, again {report['zip_mib_s']:7.1f} MiB/s | file {report['file_mib_s']:7.1f} MiB/s | "
        f"resumed sha256 {'ok' if report['resumed_sha256_matches'] else 'DIFFERS'} | "
        f"coordinator peak RSS {report['rss_peak_kib'] / 1024:6.1f} MiB "
        f"(at start {report['rss_start_kib'] / 1024:.1f}, after upload {report['rss_after_upload_kib'] / 1024:.1f})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64M,1G", help="artifact sizes, comma-separated (default 64M,1G)")
    parser.add_argument("--url", help="a running coordinator (else one is started per size)")
    parser.add_argument("--pid", type=int, help="its process id, to read its memory")
    parser.add_argument("--client-key")
    parser.add_argument("--miner-key")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    arguments = parser.parse_args()
    sizes = [parse_size(s) for s in arguments.sizes.split(",")]
    reports = []
    for size in sizes:
        if arguments.url:
            if not (arguments.pid and arguments.client_key and arguments.miner_key):
                parser.error("--url needs --pid, --client-key and --miner-key")
            running = Coordinator(arguments.url, arguments.pid, arguments.client_key, arguments.miner_key)
            reports.append(run(running, size))
        else:
            with tempfile.TemporaryDirectory(prefix="aitbc-bench-") as folder:
                coordinator = start_coordinator(Path(folder))
                try:
                    reports.append(run(coordinator, size))
                finally:
                    coordinator.stop()
        if not arguments.json:
            print_report(reports[-1])
    if arguments.json:
        print(json.dumps(reports, indent=2))
    elif len(reports) > 1:
        low, high = reports[0], reports[-1]
        growth = (high["rss_peak_kib"] - low["rss_peak_kib"]) / 1024
        ratio = high["size_bytes"] / low["size_bytes"]
        print(f"peak RSS grew {growth:+.1f} MiB while the artifact grew {ratio:.0f}x")


if __name__ == "__main__":
    main()
