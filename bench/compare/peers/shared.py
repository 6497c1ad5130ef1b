"""What every peer's tasks share: where they record that they ran (Redis keys), read by runner.py."""

from __future__ import annotations

import os
import time

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/bench_peers")
DONE = "bench:done"  # INCR by each no-op job
FIRST = "bench:first"  # time.time() when the first no-op job finished
LAST = "bench:last"  # time.time() when the job that made the count reach BENCH_TOTAL finished
PROBES = "bench:probes"  # seconds from submit to the probe task's first line, one per probe
TOTAL = int(os.environ.get("BENCH_TOTAL", "0"))


def record_done(count: int) -> list[tuple[str, float]]:
    """The keys to set after the INCR that returned `count` (first and last completion times)."""
    now = time.time()
    marks = []
    if count == 1:
        marks.append((FIRST, now))
    if count == TOTAL:
        marks.append((LAST, now))
    return marks


def sync_done() -> None:
    connection = _sync_connection()
    for key, value in record_done(int(connection.incr(DONE))):
        connection.set(key, value)


def sync_probe(sent: float) -> None:
    started = time.time()
    _sync_connection().rpush(PROBES, started - sent)


_connection = None


def _sync_connection():
    global _connection
    if _connection is None:
        import redis

        _connection = redis.Redis.from_url(REDIS_URL)
    return _connection


_async_connection = None


def _async():
    global _async_connection
    if _async_connection is None:
        import redis.asyncio

        _async_connection = redis.asyncio.Redis.from_url(REDIS_URL)
    return _async_connection


async def async_done() -> None:
    connection = _async()
    for key, value in record_done(int(await connection.incr(DONE))):
        await connection.set(key, value)


async def async_probe(sent: float) -> None:
    started = time.time()
    await _async().rpush(PROBES, started - sent)
