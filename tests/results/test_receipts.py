"""Receipts: signed by the coordinator's key (created once, kept across restarts), naming the job, account,
miner, manifest hash, times and resources, with the miner's manifest signature; every link checks."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import httpx
from asgi_lifespan import LifespanManager

from aitbc.api.app import create_app
from aitbc.domain.clock import ManualClock, isoformat_z
from aitbc.domain.manifest import digest, public_key_text, verify
from aitbc.domain.receipts import FoundFile, check_files, check_receipt, key_id
from aitbc.settings import Settings
from aitbc.storage.sql.results import SqlResultStore
from aitbc.wiring import coordinator_session
from tests.results.flow import World, package_files


async def test_receipt_is_signed_and_names_everything(world: World, clock: ManualClock) -> None:
    done = await world.finished(package_files())
    clock.advance(5)
    key = (await world.http.get("/v1/coordinator/key")).json()
    assert key["algorithm"] == "Ed25519" and key["key_id"] == key_id(key["public_key"])
    assert (await world.http.get("/.well-known/aitbc-coordinator.json")).json() == key
    response = await world.http.get(f"/v1/jobs/{done.job_id}/receipt", headers=done.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    receipt, manifest = body["receipt"], body["manifest"]
    assert verify(key["public_key"], receipt, body["signature"])
    assert all(check.ok for check in check_receipt(receipt, body["signature"], key["public_key"], manifest))
    job = (await world.http.get(f"/v1/jobs/{done.job_id}", headers=done.headers)).json()
    account = (await world.coordinator.accounts.authenticate(done.headers["X-Api-Key"])).account
    assert receipt["job_id"] == done.job_id and receipt["account_id"] == account.id
    assert receipt["miner_id"] == done.miner.miner_id == manifest["miner_id"]
    assert receipt["manifest_sha256"] == digest(manifest)
    assert receipt["status"] == "completed" and receipt["partial"] is False
    assert receipt["files"] == len(done.files)
    assert receipt["total_bytes"] == sum(len(d) for d in done.files.values())
    assert receipt["completed_at"] == job["completed_at"] and receipt["started_at"] == job["started_at"]
    assert receipt["resources"]["attempts"] == 1 and receipt["resources"]["wall_seconds"] == 0.0
    assert job["cost"] is not None, "billing settles the charge when the job ends"
    charge = receipt["charge"]
    assert Decimal(charge["amount"]) == Decimal(job["cost"]) and "E" not in charge["amount"]
    assert (charge["currency"], charge["billed_seconds"]) == ("AITBC", job["billed_seconds"])
    assert receipt["coordinator_key_id"] == key["key_id"] == body["key_id"]
    # The miner's own signature over the manifest is kept with it.
    assert verify(receipt["miner_public_key"], manifest, receipt["miner_signature"])
    assert receipt["miner_public_key"] == public_key_text(done.miner.key)
    again = (await world.http.get(f"/v1/jobs/{done.job_id}/receipt", headers=done.headers)).json()
    assert again == body, "a receipt is signed once and then served as stored"


async def test_tampering_breaks_the_named_link(world: World) -> None:
    done = await world.finished(package_files())
    key = (await world.http.get("/v1/coordinator/key")).json()["public_key"]
    body = (await world.http.get(f"/v1/jobs/{done.job_id}/receipt", headers=done.headers)).json()
    receipt, manifest, signature = body["receipt"], body["manifest"], body["signature"]

    def failing(document: dict, sig: str, man: dict) -> list[str]:  # type: ignore[type-arg]
        return [c.name for c in check_receipt(document, sig, key, man) if not c.ok]

    assert failing(receipt, signature, manifest) == []
    forged = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert failing(receipt, forged, manifest) == ["coordinator signature"]
    assert failing({**receipt, "charge": {"amount": "0.01"}}, signature, manifest) == ["coordinator signature"]
    grown = json.loads(json.dumps(manifest))
    grown["files"][0]["size"] += 1
    assert failing(receipt, signature, grown) == ["manifest hash", "miner signature"]
    found = {f["path"]: FoundFile(f["size"], f["sha256"]) for f in manifest["files"]}
    assert all(c.ok for c in check_files(manifest, found, frozenset()))
    flipped = dict(found)
    flipped["artifacts/model.bin"] = replace(found["artifacts/model.bin"], sha256="0" * 64)
    flipped["artifacts/extra.bin"] = FoundFile(1, "1" * 64)
    del flipped["result.txt"]
    bad = {c.name: c.detail for c in check_files(manifest, flipped, frozenset()) if not c.ok}
    assert set(bad) == {"file artifacts/model.bin", "file artifacts/extra.bin", "file result.txt"}
    assert bad["file result.txt"] == "missing" and bad["file artifacts/extra.bin"] == "not in the manifest"


async def test_the_key_is_created_once_and_kept(settings: Settings, clock: ManualClock) -> None:
    async with coordinator_session(settings, clock) as first:
        key = first.receipts.coordinator_key()
    path = settings.resolved_coordinator_key_file
    assert path.exists() and path.stat().st_mode & 0o777 == 0o600
    async with coordinator_session(settings, clock) as second:
        assert second.receipts.coordinator_key() == key
    elsewhere = replace(settings, data_dir=settings.data_dir.parent / "other", coordinator_key_file=path)
    async with coordinator_session(elsewhere, clock) as third:
        assert third.receipts.coordinator_key() == key, "replicas configured with one key file share the key"


async def test_the_sweeper_signs_receipts_nobody_asked_for(world: World, clock: ManualClock) -> None:
    done = await world.finished(package_files())
    clock.advance(3)
    signed_at = isoformat_z(clock.now())
    report = await world.coordinator.retention.run_once()
    assert report.receipts == 1
    assert (await world.coordinator.retention.run_once()).receipts == 0
    clock.advance(100)
    served = (await world.http.get(f"/v1/jobs/{done.job_id}/receipt", headers=done.headers)).json()
    assert served["receipt"]["issued_at"] == signed_at


async def test_receipt_of_a_running_job_is_not_ready(world: World) -> None:
    job_id, headers, _miner, _lease = await world.running()
    response = await world.http.get(f"/v1/jobs/{job_id}/receipt", headers=headers)
    assert response.status_code == 409


async def test_receipts_survive_deleted_results(world: World) -> None:
    done = await world.finished(package_files())
    deleted = await world.http.delete(f"/v1/jobs/{done.job_id}/results", headers=done.headers)
    assert deleted.status_code == 200
    receipt = await world.http.get(f"/v1/jobs/{done.job_id}/receipt", headers=done.headers)
    assert receipt.status_code == 200 and receipt.json()["receipt"]["job_id"] == done.job_id


async def test_the_receipt_is_signed_when_the_job_finishes(settings: Settings, clock: ManualClock) -> None:
    app = create_app(replace(settings, run_results_sweeper=True, results_sweep_interval_seconds=3600), clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aitbc.test") as http:
            world = World(http, app.state.coordinator)
            coordinator = app.state.coordinator
            for _ in range(500):  # the sweeper's first pass is over (it must not be what signs the receipt),
                if coordinator.retention.passes and coordinator.hub.subscriber_count >= 1:  # and the issuer follows
                    break
                await asyncio.sleep(0.01)
            assert coordinator.retention.passes == 1 and coordinator.hub.subscriber_count >= 1
            done = await world.finished(package_files())
            store = SqlResultStore(app.state.coordinator.database)
            for _ in range(100):
                if await store.get_receipt(done.job_id) is not None:
                    break
                await asyncio.sleep(0.02)
            stored = await store.get_receipt(done.job_id)
            assert stored is not None, "signed without anyone asking for it"
            job = (await http.get(f"/v1/jobs/{done.job_id}", headers=done.headers)).json()
            assert isoformat_z(stored.issued_at) == job["completed_at"]


async def test_receipt_names_the_observed_reported_and_billed_times(world: World, clock: ManualClock) -> None:
    """Which times the charge used, both pairs: the coordinator's observed start and end, and the miner's."""
    job_id, headers, miner, lease_id = await world.running()
    started = clock.now()
    clock.advance(30)  # the completion arrives late, as after a coordinator outage
    ran_from, ran_until = started + timedelta(seconds=0.5), started + timedelta(seconds=4.2)
    finish = await miner.finish(
        job_id, lease_id, package_files(), started_at=isoformat_z(ran_from), ended_at=isoformat_z(ran_until)
    )
    assert finish.status_code == 200, finish.text
    body = (await world.http.get(f"/v1/jobs/{job_id}/receipt", headers=headers)).json()
    charge = body["receipt"]["charge"]
    assert charge["billed_seconds"] == 4
    assert charge["times"] == {
        "observed_by_coordinator": {"started_at": isoformat_z(started), "ended_at": isoformat_z(clock.now())},
        "reported_by_miner": {"started_at": isoformat_z(ran_from), "ended_at": isoformat_z(ran_until)},
        "billed": {"started_at": isoformat_z(ran_from), "ended_at": isoformat_z(ran_until)},
    }
    key = (await world.http.get("/v1/coordinator/key")).json()["public_key"]
    assert all(check.ok for check in check_receipt(body["receipt"], body["signature"], key, body["manifest"]))
