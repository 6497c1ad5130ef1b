"""The bench's quick mode on our side (no peer environment): it runs end to end on a real coordinator, miner
and wrk, and its table has a row for every workload. No timing is asserted: the bench measures, tests do not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.e2e
def test_quick_bench_prints_every_workload(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is missing: `apt-get install -y wrk` (make test installs it)")
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.compare",
            "--quick",
            "--ours-only",
            "--no-embedding",
            "--backends",
            "sqlite",
            "--jobs",
            "200",
            "--backlog",
            "200",
            "--probes",
            "10",
            "--round-trips",
            "5",
            "--accounts",
            "8",
            "--growth-sizes",
            "500,2000",
            "--wrk-seconds",
            "1",
            "--json",
            str(output),
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rows = json.loads(output.read_text())["rows"]
    seen = {(row["workload"], row["system"]) for row in rows}
    ours = "aitbc (sqlite)"
    for expected in [
        ("e2e", ours),
        ("drain", ours),
        ("latency", ours),
        ("reads", "hello-world (FastAPI, uvicorn)"),
        ("reads", f"{ours} status GET"),
        ("reads", f"{ours} list GET"),
        ("reads", f"{ours} submit POST"),
        ("round trip: command", "the work itself (sh -c 'echo hi')"),
        ("round trip: command", ours),
        *[
            (f"growth: {read} (sqlite)", size)
            for read in ("status GET", "list GET", "list GET ?status=failed", "stats GET", "coordinator RSS")
            for size in ("500 jobs", "2k jobs")
        ],
    ]:
        assert expected in seen, f"no row for {expected}: {sorted(seen)}"
    assert all(row["value"] > 0 for row in rows), rows
    assert not [row for row in rows if row["detail"].get("non-2xx")], "a read met answers other than 2xx"
    assert "reproduce" in done.stdout
    assert "ratio" in done.stdout
