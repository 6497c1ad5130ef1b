"""Celery on the Redis broker, no result backend; one `celery worker` process per worker slot (prefork pool
of one), so that M workers are M processes as for the other peers."""

from __future__ import annotations

import time

from celery import Celery
from shared import REDIS_URL, sync_done, sync_probe

app = Celery("bench", broker=REDIS_URL)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="noop")
def noop() -> None:
    sync_done()


@app.task(name="probe")
def probe(sent: float) -> None:
    sync_probe(sent)


class Client:
    asynchronous = False

    def open(self) -> None:
        app.connection_for_write().ensure_connection()

    def submit_noop(self) -> None:
        noop.delay()

    def submit_probe(self) -> None:
        probe.delay(time.time())

    def close(self) -> None:
        return None


def worker_command(bin_dir: str) -> list[str]:
    return [
        f"{bin_dir}/celery",
        "-A",
        "celery_peer",
        "worker",
        "--concurrency",
        "1",
        "--pool",
        "prefork",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "WARNING",
        "-n",
        f"bench-{time.monotonic_ns()}@%h",
    ]
