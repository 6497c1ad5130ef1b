"""A miner's schemas reach every replica's in-memory view of live miners: inside its relayed record, or, when
the record would not fit in a NOTIFY, by reference (the other replicas read the miner once, then only move its
`last_seen_at` while nothing it declared changed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.accounts import Miner
from aitbc.domain.clock import ManualClock
from aitbc.domain.manifest import public_key_text
from aitbc.domain.plans import Role
from aitbc.protocol.miners import RegisterRequest
from aitbc.services.miner_registry import RELAY_RECORD_MAX_BYTES, _miner, relay_record
from aitbc.settings import Settings
from aitbc.wiring import Coordinator, open_coordinator
from tests.helpers import job_request, principal

SMALL: dict[str, Any] = {"command": {"input": {"type": "string", "pattern": "\\S"}, "parameters": None}}
# An enum of output names too long for a notice: what a miner with many codecs or models could declare.
LARGE: dict[str, Any] = {
    "command": {"input": {"enum": [f"preset-{index:05d}" for index in range(1000)]}, "parameters": {"type": "object"}}
}


MINER_KEY = public_key_text(Ed25519PrivateKey.generate())


async def register(coordinator: Coordinator, name: str, schemas: dict[str, Any]) -> Miner:
    farm = await principal(coordinator, "farm", Role.MINER)
    request = RegisterRequest(name=name, runtimes=["command"], public_key=MINER_KEY, schemas=schemas)
    miner_id = (await coordinator.miners.register(farm, request)).miner_id
    found = await coordinator.live_miners.get_miner(miner_id)
    assert found is not None
    return found


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(20):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} never happened") from None


@pytest.fixture
async def two(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[Coordinator, Coordinator, ManualClock]]:
    """Two coordinators on one database, with no relay between them: the test hands one's notices to the other."""
    clock = ManualClock()
    first = await open_coordinator(Settings(data_dir=tmp_path / "a", database_url=database_url), clock)
    second = await open_coordinator(Settings(data_dir=tmp_path / "b", database_url=database_url), clock)
    yield first, second, clock
    await second.close()
    await first.close()


async def test_a_small_record_carries_the_schemas_and_reads_back_the_same(
    two: tuple[Coordinator, Coordinator, ManualClock],
) -> None:
    a, b, _ = two
    miner = await register(a, "small", SMALL)
    record = relay_record(miner)
    assert record["schemas"] == SMALL and "by_reference" not in record
    assert _miner(record) == miner
    b.hub.deliver_miner_seen(record)
    (heard,) = b.live_miners.live(b.jobs.miners_since())
    assert heard == miner and heard.capabilities.schemas_by_runtime()["command"].input is not None


async def test_a_record_too_large_for_a_notice_goes_by_reference_and_is_read_once(
    two: tuple[Coordinator, Coordinator, ManualClock],
) -> None:
    a, b, clock = two
    miner = await register(a, "large", LARGE)
    record = relay_record(miner)
    assert set(record) == {"by_reference", "id", "digest", "last_seen_at"}
    assert len(str(record)) < RELAY_RECORD_MAX_BYTES
    b.hub.deliver_miner_seen(record)
    await until(lambda: bool(b.live_miners.live(b.jobs.miners_since())), "the read of the miner relayed by reference")
    (heard,) = b.live_miners.live(b.jobs.miners_since())
    assert heard.capabilities == miner.capabilities
    alice = await principal(b, "alice", Role.CLIENT)
    job = (await b.jobs.submit(alice, job_request(input="echo hi", queue_timeout_seconds=600))).job
    assert "input for 'command': must be one of 'preset-00000'" in str(await b.jobs.waiting_for(job))

    # Heard from again, nothing it declared changed: the moment moves, from the notice alone.
    clock.advance(30)
    b.hub.deliver_miner_seen(relay_record(replace(miner, last_seen_at=clock.now())))
    (moved,) = b.live_miners.live(b.jobs.miners_since())
    assert moved.last_seen_at == clock.now() and moved.capabilities == miner.capabilities

    # Registered again with other schemas (as large): the digest differs, so the new row is read.
    clock.advance(1)
    other = {"command": {**LARGE["command"], "parameters": {"type": "object", "maxProperties": 3}}}
    again = await register(a, "large", other)
    record = relay_record(again)
    assert again.id == miner.id and record["by_reference"] and record["digest"] != relay_record(miner)["digest"]
    b.hub.deliver_miner_seen(record)
    await until(
        lambda: b.live_miners.live(b.jobs.miners_since())[0].capabilities == again.capabilities,
        "the read of the miner registered again",
    )


@pytest.mark.postgres
async def test_schemas_too_large_for_a_notice_reach_the_other_replica(postgres_url: str, tmp_path: Path) -> None:
    replicas = []
    for name in ("a", "b"):
        coordinator = await open_coordinator(Settings(data_dir=tmp_path / name, database_url=postgres_url))
        await coordinator.start_relay()
        replicas.append(coordinator)
    a, b = replicas
    try:
        for coordinator in replicas:
            assert coordinator.relay is not None and await coordinator.relay.listener_healthy(timeout=20)
        miner = await register(a, "large", LARGE)
        await until(lambda: bool(b.live_miners.live(b.jobs.miners_since())), "the miner on the other replica")
        (heard,) = b.live_miners.live(b.jobs.miners_since())
        assert heard.id == miner.id and heard.capabilities == miner.capabilities
    finally:
        for coordinator in replicas:
            await coordinator.close()
