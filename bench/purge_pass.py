"""The cost of one purge pass of the sweeper on a store that holds many kept results: the query for recorded
result files nothing refers to (every pass) and the scan of blobs no record names (every
blob_scan_interval_seconds), when there is nothing to purge, which is the common case.

    .venv/bin/python bench/purge_pass.py --jobs 20000 --files 5
    .venv/bin/python bench/purge_pass.py --jobs 20000 --files 5 --database-url postgresql://postgres@127.0.0.1/bench

Rows are bulk-inserted (completed jobs with available results, `--files` result files each, one blob file on
disk per result file; PostgreSQL then analyzes them, as autovacuum would); then each part of a pass is timed
three times and the best is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select

from aitbc.domain.clock import ManualClock
from aitbc.domain.plans import Role
from aitbc.protocol.jobs import SubmitJobRequest
from aitbc.services.blob_purge import BlobPurger
from aitbc.settings import Settings
from aitbc.storage.sql.tables import jobs, result_files
from aitbc.storage.sql.uploads import SqlUploadStore
from aitbc.wiring import Coordinator, coordinator_session

BATCH = 2000


async def fill(coordinator: Coordinator, count: int, files: int, root: Path) -> None:
    principal = await coordinator.accounts.authenticate(
        (await coordinator.accounts.create_key("bench", Role.CLIENT)).secret
    )
    template = (await coordinator.jobs.submit(principal, SubmitJobRequest(type="command", input="true"))).job
    found = await coordinator.database.read(
        lambda connection: connection.execute(select(jobs).where(jobs.c.id == template.id)).one()
    )
    row = dict(found._mapping)
    now = coordinator.clock.now()
    for start in range(0, count, BATCH):
        job_rows: list[dict[str, Any]] = []
        file_rows: list[dict[str, Any]] = []
        for number in range(start, min(count, start + BATCH)):
            job_id, lease_id = f"job_bench{number:012d}", f"lease_bench{number:012d}"
            job_rows.append(
                {
                    **row,
                    "id": job_id,
                    "status": "completed",
                    "results_state": "available",
                    "result_lease_id": lease_id,
                    "completed_at": now,
                    "idempotency_key": None,
                }
            )
            for index in range(files):
                key = f"results/{job_id}/{lease_id}/file{index}"
                path = root / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"x")
                file_rows.append(
                    {
                        "job_id": job_id,
                        "lease_id": lease_id,
                        "path": f"artifacts/file{index}",
                        "size": 1,
                        "sha256": "0" * 64,
                        "blob_key": key,
                        "created_at": now,
                    }
                )

        def load(connection: Connection, job_rows: list[dict[str, Any]], file_rows: list[dict[str, Any]]) -> None:
            connection.execute(insert(jobs), job_rows)
            connection.execute(insert(result_files), file_rows)

        await coordinator.database.write(partial(load, job_rows=job_rows, file_rows=file_rows))


async def best_of(label: str, action: Callable[[], Awaitable[int]]) -> None:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        purged = await action()
        times.append(time.perf_counter() - started)
        assert purged == 0, f"{label}: purged {purged} files that are referenced"
    print(f"  {label:<44} {min(times) * 1000:9.1f} ms")


async def run(count: int, files: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="aitbc-purge-bench-") as folder:
        settings = Settings(data_dir=Path(folder), database_url=database_url, run_reaper=False)
        clock = ManualClock()
        async with coordinator_session(settings, clock) as coordinator:
            await fill(coordinator, count, files, settings.blob_dir)
            if coordinator.database.dialect == "postgresql":
                # as autovacuum would after a bulk load
                await coordinator.database.write(lambda connection: connection.exec_driver_sql("ANALYZE"))
            print(f"{coordinator.database.dialect}: {count} kept results, {count * files} result files and blobs")
            purger = BlobPurger(SqlUploadStore(coordinator.database), coordinator.blobs, clock, settings)
            now = clock.now()
            await best_of("recorded files nothing refers to (every pass)", lambda: purger.purge_result_files(now))
            await best_of("blobs no record names (every scan interval)", lambda: purger.purge_orphan_blobs(now))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="an empty PostgreSQL database; SQLite if not given")
    arguments = parser.parse_args()
    asyncio.run(run(arguments.jobs, arguments.files, arguments.database_url))


if __name__ == "__main__":
    main()
