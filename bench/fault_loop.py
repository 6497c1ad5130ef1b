"""Fault injection with real processes: SIGKILL the coordinator and the miners at random, then audit.

    PYTHONPATH=. .venv/bin/python bench/fault_loop.py --jobs 40 --seed 7 [--faults 6] [--miners 2]
        [--database-url postgresql://postgres@127.0.0.1:5432/]

Runs N `command` jobs on `aitbc miner run --allow-command` processes against `aitbc serve` while the
coordinator and the miners are killed and restarted at random (seeded) moments; then checks that every job
is terminal, none ended twice, the ledger balances, every completed job has its result and no job process
outlived its job (see tests/faults.py). With a PostgreSQL URL it makes a fresh database on that server for
the run and drops it afterwards. Exits 1 if anything was lost, doubled or left running.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tests.faults import FaultLoop


@contextmanager
def fresh_database(server_url: str | None) -> Iterator[str | None]:
    """A new, empty database on the PostgreSQL server of `server_url` (SQLite: None, the data folder's)."""
    if server_url is None or make_url(server_url).get_backend_name() != "postgresql":
        yield server_url
        return
    name = f"aitbc_fault_{secrets.token_hex(4)}"
    server = make_url(server_url).set(drivername="postgresql+psycopg")
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", type=int, default=None, help="kills to inject (default: jobs / 5, at least 2)")
    parser.add_argument("--cancels", type=int, default=None, help="jobs cancelled by the client (default: jobs / 10)")
    parser.add_argument("--miners", type=int, default=2)
    parser.add_argument("--job-seconds", type=float, default=1.5)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL; default: SQLite")
    options = parser.parse_args()
    with fresh_database(options.database_url) as database_url:
        loop = FaultLoop(
            Path(tempfile.mkdtemp(prefix="aitbc-fault-")),
            jobs=options.jobs,
            seed=options.seed,
            database_url=database_url,
            miners=options.miners,
            faults=options.faults if options.faults is not None else max(2, options.jobs // 5),
            cancels=options.cancels if options.cancels is not None else options.jobs // 10,
            job_seconds=options.job_seconds,
        )
        report = loop.run_all()
    print("\n".join(report.lines()))
    print(f"(logs in {loop.stack.root})")
    sys.exit(1 if report.problems or report.survivors else 0)


if __name__ == "__main__":
    main()
