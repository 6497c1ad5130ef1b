"""The comparison in one command: our coordinator (SQLite and PostgreSQL) and the peer queues on the same
workloads, one table with ratios.

    .venv/bin/python -m bench.compare                 # everything, full size (make bench)
    .venv/bin/python -m bench.compare --quick         # a smoke run, scaled down
    .venv/bin/python -m bench.compare --ours-only --only reads,growth --growth-sizes 10000,100000
    .venv/bin/python -m bench.compare --list          # the workloads and the other benches
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from bench.compare import growth
from bench.compare import ours as our_side
from bench.compare.coordinator import Ours, free_port
from bench.compare.peer_venvs import PEERS, POSTGRES_PEERS, ensure
from bench.compare.table import Row, detail_text, render, with_ratios, write_json
from bench.compare.wrk import Load, Result, command_line, run_wrk

REPOSITORY = Path(__file__).resolve().parents[2]
WORKLOADS = {
    "e2e": "N no-op jobs submitted one per request by C concurrent clients while M miners/workers take and "
    "finish them; jobs/s from the first submit to the last completion",
    "drain": "a backlog of N jobs, then M miners/workers start; jobs/s from the first completion to the last",
    "latency": "submit → the job in the hands of an idle, long-polling miner (a peer: its task's first line), "
    "p50/p99, one job at a time",
    "reads": "status GET over many jobs of many accounts, list GET, POST /v1/jobs (a no-op job of a type no miner "
    "takes, round-robin over the accounts) and FastAPI's hello-world GET (the ceiling), all under the same wrk load",
    "roundtrip": "submit → completed for a trivial `command` job and a one-text embedding job on a warm, idle "
    "`aitbc miner run`, beside the runtime's own time for the same work",
    "growth": "status, list (with and without a filter) and stats p99 under the same wrk load with a seeded "
    "history of each size, and the coordinator's RSS after the load",
}
OTHER_BENCHES = {
    "lifecycle": ".venv/bin/python bench/lifecycle_throughput.py --jobs 500 --miners 4",
    "cancel latency": "PYTHONPATH=. .venv/bin/python bench/cancel_latency.py --runs 3",
    "results throughput": ".venv/bin/python bench/results_throughput.py --sizes 64M",
    "export memory": ".venv/bin/python bench/export_memory.py --jobs 100000",
    "embedding worker": "OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/embedding_worker.py --runs 30",
    "purge pass": ".venv/bin/python bench/purge_pass.py",
    "fault loop": ".venv/bin/python bench/fault_loop.py",
    "soak": ".venv/bin/python bench/soak.py",
}
SCRIPT = ".venv/bin/python -m bench.compare"


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scale everything down (a smoke run of minutes)")
    parser.add_argument("--list", action="store_true", help="print the workloads and the other benches, and exit")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads to run")
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="our side, comma-separated: sqlite, sqlite-normal (SQLite with synchronous=normal), postgresql",
    )
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers, or none")
    parser.add_argument("--ours-only", action="store_true", help="no peers (and no peer environment installed)")
    parser.add_argument("--jobs", type=int, help="e2e jobs (default 10,000; quick 500)")
    parser.add_argument("--backlog", type=int, help="drain backlog (default 10,000; quick 500)")
    parser.add_argument("--miners", type=int, default=4, help="no-op miners / peer workers (default 4)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent submitting clients (default 32)")
    parser.add_argument("--probes", type=int, help="latency samples (default 200; quick 20)")
    parser.add_argument("--round-trips", type=int, help="round trip samples per job kind (default 100; quick 10)")
    parser.add_argument("--no-embedding", action="store_true", help="skip the embedding round trip")
    parser.add_argument("--accounts", type=int, help="client accounts the load is spread over (default 32)")
    parser.add_argument("--growth-sizes", help="comma-separated history sizes (default 10000,100000,1000000)")
    parser.add_argument("--wrk-seconds", type=int, help="each wrk run (default 10; quick 2)")
    parser.add_argument("--wrk-connections", type=int, default=32, help="wrk connections, one thread (default 32)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the bench's temporary folder (logs, data)")
    found = parser.parse_args()
    quick = found.quick
    found.jobs = found.jobs or (500 if quick else 10_000)
    found.backlog = found.backlog or (500 if quick else 10_000)
    found.probes = found.probes or (20 if quick else 200)
    found.round_trips = found.round_trips or (10 if quick else 100)
    found.accounts = found.accounts or (16 if quick else 32)
    found.wrk_seconds = found.wrk_seconds or (2 if quick else 10)
    sizes = found.growth_sizes or ("1000,10000" if quick else "10000,100000,1000000")
    found.sizes = [int(size) for size in sizes.split(",") if size]
    found.workloads = [name for name in found.only.split(",") if name]
    unknown = set(found.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}; see --list")
    found.backend_list = [name for name in found.backends.split(",") if name]
    strange = set(found.backend_list) - {"sqlite", "sqlite-normal", "postgresql"}
    if strange:
        parser.error(f"unknown backend(s): {', '.join(sorted(strange))}; use sqlite, sqlite-normal or postgresql")
    found.peer_list = [] if found.ours_only or found.peers == "none" else [p for p in found.peers.split(",") if p]
    return found


def print_list() -> None:
    print("workloads (python -m bench.compare --only NAME,…):")
    for name, meaning in WORKLOADS.items():
        print(f"  {name:<10} {meaning}")
    print("\nthe other benches, run from the repository root (make bench-all runs the first four):")
    for name, command in OTHER_BENCHES.items():
        print(f"  {name:<19} {command}")


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian's package)", flush=True)
        if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        return
    raise SystemExit("wrk is missing: run `sudo apt-get install -y wrk` and start again")


class Bench:
    def __init__(self, settings: argparse.Namespace, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.rows: list[Row] = []
        self.load = Load(1, settings.wrk_connections, settings.wrk_seconds)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.workload} | {row.system} | {row.value:.1f} {row.metric} | {detail_text(row.detail)}", flush=True)

    def ours_command(self, workload: str, backend: str, *extra: str) -> str:
        accounts = f"--accounts {self.settings.accounts}"
        return " ".join([SCRIPT, "--ours-only --only", workload, "--backends", backend, accounts, *extra])

    # -- our side ------------------------------------------------------------------------------------

    def run_ours(self, backend: str) -> None:
        wanted = set(self.settings.workloads) - {"growth"}
        if not wanted:
            return
        s = self.settings
        ours = Ours(self.root, backend, "main")
        try:
            ours.make_accounts(s.accounts)
            ours.start()
            print(f"{ours.system}: {ours.serve_command()}", flush=True)
            submitted: list[our_side.Submitted] = []
            sizes = f"--jobs {s.jobs} --miners {s.miners} --clients {s.clients}"
            if "e2e" in wanted:
                rate, submits, done = our_side.e2e(ours, s.jobs, s.miners, s.clients)
                submitted += done
                self.add(
                    Row(
                        "e2e",
                        ours.system,
                        "jobs/s",
                        rate,
                        self.ours_command("e2e", backend, sizes),
                        {"submits/s": submits, "jobs": s.jobs, "miners": s.miners},
                    )
                )
            if "drain" in wanted:
                rate, done = our_side.drain(ours, s.backlog, s.miners, s.clients)
                submitted += done
                self.add(
                    Row(
                        "drain",
                        ours.system,
                        "jobs/s",
                        rate,
                        self.ours_command("drain", backend, f"--backlog {s.backlog} --miners {s.miners}"),
                        {"jobs": s.backlog, "miners": s.miners},
                    )
                )
            if "latency" in wanted:
                p50, p99 = our_side.summary(our_side.latency(ours, s.probes))
                self.add(
                    Row(
                        "latency",
                        ours.system,
                        "p50 ms",
                        p50,
                        self.ours_command("latency", backend, f"--probes {s.probes}"),
                        {"p99 ms": p99},
                    )
                )
            if "reads" in wanted:
                if not submitted:
                    submitted = asyncio.run(our_side.submit_all(ours, min(s.jobs, 2000), s.clients))
                wrk = f"--wrk-seconds {s.wrk_seconds} --wrk-connections {s.wrk_connections}"
                for name, result in our_side.reads(ours, submitted, self.load).items():
                    self.add(
                        self.read_row(
                            "reads", f"{ours.system} {name}", result, self.ours_command("reads", backend, wrk)
                        )
                    )
            if "roundtrip" in wanted:
                self.round_trips(ours)
        finally:
            ours.drop()

    def read_row(self, workload: str, system: str, result: Result, command: str) -> Row:
        detail: dict[str, float | str] = {"p50 ms": result.p50_ms, "p99 ms": result.p99_ms}
        if result.non2xx or result.socket_errors:
            detail["non-2xx"] = float(result.non2xx)
            detail["socket errors"] = float(result.socket_errors)
        return Row(workload, system, "req/s", result.requests_per_second, command, detail)

    def round_trips(self, ours: Ours) -> None:
        s = self.settings
        kinds: list[tuple[str, dict[str, object]]] = [("command", {"type": "command", "input": "echo hi"})]
        if not s.no_embedding:
            kinds.append(
                ("embedding", {"type": "embedding", "model": "all-MiniLM-L6-v2", "input": our_side.EMBEDDING_TEXT})
            )
        miner = our_side.RealMiner(ours, ",".join(kind for kind, _ in kinds))
        try:
            for kind, body in kinds:
                p50, p99 = our_side.summary(our_side.round_trips(ours, body, s.round_trips))
                self.add(
                    Row(
                        f"round trip: {kind}",
                        ours.system,
                        "p50 ms",
                        p50,
                        self.ours_command("roundtrip", ours.backend, f"--round-trips {s.round_trips}"),
                        {"p99 ms": p99},
                    )
                )
        finally:
            miner.stop()

    def own_times(self) -> None:
        """The runtimes' own time for the round trip's work, once (it does not depend on the backend)."""
        s = self.settings
        p50, p99 = our_side.summary(our_side.command_own_time(s.round_trips))
        self.add(
            Row(
                "round trip: command",
                "the work itself (sh -c 'echo hi')",
                "p50 ms",
                p50,
                "sh -c 'echo hi' (timed from Python)",
                {"p99 ms": p99},
                reference=True,
            )
        )
        if not s.no_embedding:
            p50, p99 = our_side.summary(our_side.embedding_own_time(s.round_trips))
            self.add(
                Row(
                    "round trip: embedding",
                    "the work itself (model.encode)",
                    "p50 ms",
                    p50,
                    f"OMP_NUM_THREADS=1 .venv/bin/python bench/compare/embedding_direct.py --runs {s.round_trips}",
                    {"p99 ms": p99},
                    reference=True,
                )
            )

    def hello_world(self) -> None:
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, str(REPOSITORY / "bench/compare/hello.py"), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(url + "/", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            result = run_wrk(url, [("/", "none")], self.load)
        finally:
            server.terminate()
            server.wait(10)
        row = self.read_row(
            "reads",
            "hello-world (FastAPI, uvicorn)",
            result,
            f".venv/bin/python bench/compare/hello.py --port 8001 & "
            f"{command_line(self.load, 'http://127.0.0.1:8001')}  # targets.tsv: one line '/<TAB>none'",
        )
        row.reference = True
        self.add(row)

    def run_growth(self, backend: str) -> None:
        ours = Ours(self.root, backend, "growth")
        try:
            ours.make_accounts(self.settings.accounts)
            history = growth.History(ours)
            sizes = ",".join(str(size) for size in self.settings.sizes)
            command = self.ours_command(
                "growth", backend, f"--growth-sizes {sizes} --wrk-seconds {self.settings.wrk_seconds}"
            )
            for index, size in enumerate(self.settings.sizes):
                started = time.perf_counter()
                history.seed(size)
                print(
                    f"{ours.system}: seeded {history.count} jobs in {time.perf_counter() - started:.0f} s", flush=True
                )
                ours.start()
                try:
                    label = growth.size_label(size)
                    for name, result in growth.measure(ours, history, self.load).items():
                        row = self.read_row(f"growth: {name} ({backend})", label, result, command)
                        self.add(
                            Row(
                                row.workload,
                                label,
                                "p99 ms",
                                result.p99_ms,
                                command,
                                {**row.detail, "req/s": result.requests_per_second},
                                reference=index == 0,
                            )
                        )
                    rss, peak = ours.rss_mib()
                    self.add(
                        Row(
                            f"growth: coordinator RSS ({backend})",
                            label,
                            "MiB",
                            rss,
                            command,
                            {"peak MiB": peak},
                            reference=index == 0,
                        )
                    )
                finally:
                    ours.stop()
        finally:
            ours.drop()

    # -- the peers -----------------------------------------------------------------------------------

    def run_peer(self, peer: str) -> None:
        s = self.settings
        python = ensure(peer)
        runner = REPOSITORY / "bench/compare/peers/runner.py"
        environment = {**os.environ}
        if peer in POSTGRES_PEERS:
            environment["BENCH_POSTGRES_URL"] = f"postgresql://postgres@127.0.0.1:5432/bench_peers_{os.getpid()}"
        for workload in ("e2e", "drain", "latency"):
            if workload not in s.workloads:
                continue
            arguments = ["--peer", peer, "--workload", workload]
            if workload == "latency":
                arguments += ["--probes", str(s.probes)]
            else:
                jobs = s.backlog if workload == "drain" else s.jobs
                arguments += ["--jobs", str(jobs), "--workers", str(s.miners), "--clients", str(s.clients)]
            command = " ".join(
                [shlex.quote(str(python.relative_to(REPOSITORY))), "bench/compare/peers/runner.py", *arguments]
            )
            done = subprocess.run(
                [str(python), str(runner), *arguments], env=environment, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                print(f"  {peer} {workload} failed:\n{done.stderr[-3000:]}", flush=True)
                continue
            found = json.loads(done.stdout.strip().splitlines()[-1])
            if workload == "latency":
                row = Row(
                    "latency",
                    peer,
                    "p50 ms",
                    found["p50_ms"],
                    command,
                    {"p99 ms": found["p99_ms"]},
                    reference=peer == "rq",
                )
            else:
                detail: dict[str, float | str] = {
                    "jobs": float(s.backlog if workload == "drain" else s.jobs),
                    "workers": float(s.miners),
                }
                if "submits_per_second" in found:
                    detail = {"submits/s": found["submits_per_second"], **detail}
                row = Row(workload, peer, "jobs/s", found["jobs_per_second"], command, detail, reference=peer == "arq")
            self.add(row)
        if peer in POSTGRES_PEERS:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "bench_peers_{os.getpid()}" WITH (FORCE)')

    def run(self) -> list[Row]:
        s = self.settings
        if "reads" in s.workloads or "growth" in s.workloads:
            ensure_wrk()
        if "reads" in s.workloads:
            self.hello_world()
        if "roundtrip" in s.workloads:
            self.own_times()
        for backend in s.backend_list:
            self.run_ours(backend)
        if "growth" in s.workloads:
            for backend in s.backend_list:
                self.run_growth(backend)
        for peer in s.peer_list:
            self.run_peer(peer)
        return self.rows


ORDER = ["e2e", "drain", "latency", "reads", "round trip", "growth"]


def ordered(rows: list[Row]) -> list[Row]:
    """By workload (in ORDER, then as first measured), the reference row first, then as measured."""
    first_seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        first_seen.setdefault(row.workload, index)

    def rank(row: Row) -> tuple[int, int, int]:
        group = next((index for index, name in enumerate(ORDER) if row.workload.startswith(name)), len(ORDER))
        return group, first_seen[row.workload], 0 if row.reference else 1

    return sorted(rows, key=rank)


def main() -> None:
    settings = options()
    if settings.list:
        print_list()
        return
    root = Path(tempfile.mkdtemp(prefix="aitbc-bench-"))
    started = time.perf_counter()
    print(
        f"bench: {', '.join(settings.workloads)} on aitbc ({', '.join(settings.backend_list)})"
        + (f" and {', '.join(settings.peer_list)}" if settings.peer_list else "")
        + f"; load spread over {settings.accounts} enterprise accounts with credits, so that plan rate limits "
        "are not what is measured; temporary folder " + str(root),
        flush=True,
    )
    try:
        rows = ordered(with_ratios(Bench(settings, root).run()))
    finally:
        if not settings.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(render(rows))
    flags = " ".join(Load(1, settings.wrk_connections, settings.wrk_seconds).flags())
    print(
        f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s; wrk {flags}; {os.cpu_count()} CPUs; "
        f"our load spread over {settings.accounts} enterprise accounts with credits (plan rate limits are not "
        "what is measured)"
    )
    if settings.json:
        recorded = {k: v for k, v in vars(settings).items() if isinstance(v, int | str | list | bool)}
        write_json(rows, settings.json, recorded)


if __name__ == "__main__":
    main()
