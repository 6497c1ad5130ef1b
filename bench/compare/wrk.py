"""HTTP load with wrk (Debian's `wrk` package): every read workload runs under the same settings, and a Lua
script spreads the requests over many (path, API key) pairs, so neither one hot row nor one account's rate
limit is what is measured."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("spread.lua")  # round-robin over `path<TAB>key` lines (a body: POSTs); WRKJSON


@dataclass(frozen=True)
class Load:
    """The load generator's settings, the same for every read workload (and printed with each)."""

    threads: int = 1
    connections: int = 32
    seconds: int = 10

    def flags(self) -> list[str]:
        return [f"-t{self.threads}", f"-c{self.connections}", f"-d{self.seconds}s", "--timeout", "10s"]


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is missing: run `apt-get install -y wrk` (Debian's package), or `make bench` does it")
    return found


def command_line(load: Load, url: str) -> str:
    """How to reproduce a load by hand (the targets file: one `path<TAB>key` a line)."""
    return f"wrk {' '.join(load.flags())} -s bench/compare/spread.lua {url} -- targets.tsv"


def run_wrk(
    url: str, targets: list[tuple[str, str]], load: Load, warmup_seconds: int = 1, body: str | None = None
) -> Result:
    """Request each (path, key) in turn, round-robin from a random start, for `load.seconds`: a GET, or a POST
    of the JSON `body` when one is given."""
    with tempfile.TemporaryDirectory() as folder:
        listing = Path(folder) / "targets.tsv"
        listing.write_text("".join(f"{path}\t{key}\n" for path, key in targets))
        arguments = [str(listing)]
        if body is not None:
            (Path(folder) / "body.json").write_text(body)
            arguments.append(str(Path(folder) / "body.json"))
        if warmup_seconds:
            warm = Load(load.threads, load.connections, warmup_seconds)
            subprocess.run(
                [wrk_path(), *warm.flags(), "-s", str(SCRIPT), url, "--", *arguments],
                capture_output=True,
                check=True,
            )
        done = subprocess.run(
            [wrk_path(), *load.flags(), "-s", str(SCRIPT), url, "--", *arguments],
            capture_output=True,
            text=True,
            check=True,
        )
    line = next((line for line in done.stdout.splitlines() if line.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    found = json.loads(line.removeprefix("WRKJSON "))
    return Result(
        requests_per_second=found["requests"] / (found["duration_us"] / 1e6),
        p50_ms=found["p50_us"] / 1000,
        p90_ms=found["p90_us"] / 1000,
        p99_ms=found["p99_us"] / 1000,
        non2xx=found["non2xx"],
        socket_errors=found["socket_errors"],
    )
