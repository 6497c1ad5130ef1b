"""RQ: Redis jobs run by `rq worker` (its default Worker class: a forked work horse per job)."""

from __future__ import annotations

import time

from redis import Redis
from rq import Queue
from shared import REDIS_URL, sync_done, sync_probe


def noop() -> None:
    sync_done()


def probe(sent: float) -> None:
    sync_probe(sent)


class Client:
    asynchronous = False

    def open(self) -> None:
        self.queue = Queue("bench", connection=Redis.from_url(REDIS_URL))

    def submit_noop(self) -> None:
        self.queue.enqueue(noop, result_ttl=0)

    def submit_probe(self) -> None:
        self.queue.enqueue(probe, time.time(), result_ttl=0)

    def close(self) -> None:
        self.queue.connection.close()


def worker_command(bin_dir: str) -> list[str]:
    return [f"{bin_dir}/rq", "worker", "--url", REDIS_URL, "--quiet", "bench"]
