"""How a job's time went, as its miner reports it with `complete`/`fail` (`timings`: setup, model load, warm or
not, run, upload): kept with the result (migration 0013), signed into the receipt under
`resources.timings`, never billed, and refused with a 422 when malformed. A receipt signed before the field
existed still verifies, and so does one from a miner that reports no breakdown."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.clock import ManualClock, isoformat_z
from aitbc.domain.manifest import digest, public_key_text, sign
from aitbc.domain.receipts import check_receipt, sign_receipt
from aitbc.storage.sql.database import migrate, sync_engine
from tests.results.flow import World, package_files
from tests.results.test_schema import _migrate_to

TIMINGS = {
    "setup_seconds": 2.5,
    "model_load_seconds": 1.25,
    "model_warm": False,
    "run_seconds": 0.4,
    "upload_seconds": 0.05,
}


async def test_the_receipt_says_how_the_time_was_spent_and_bills_only_the_run(world: World, clock: ManualClock) -> None:
    job_id, headers, miner, lease_id = await world.running()
    started = clock.now()
    clock.advance(5)
    # The model was ready 3.75 s after the start; the run took the 0.4 s after that: only those are billed.
    ran_from, ran_until = started + timedelta(seconds=3.75), started + timedelta(seconds=4.15)
    finish = await miner.finish(
        job_id,
        lease_id,
        package_files(),
        started_at=isoformat_z(ran_from),
        ended_at=isoformat_z(ran_until),
        timings=TIMINGS,
    )
    assert finish.status_code == 200, finish.text
    body = (await world.http.get(f"/v1/jobs/{job_id}/receipt", headers=headers)).json()
    receipt = body["receipt"]
    assert receipt["resources"]["timings"] == TIMINGS
    assert receipt["charge"]["billed_seconds"] == 1
    assert receipt["charge"]["times"]["billed"] == {
        "started_at": isoformat_z(ran_from),
        "ended_at": isoformat_z(ran_until),
    }
    key = (await world.http.get("/v1/coordinator/key")).json()["public_key"]
    assert all(check.ok for check in check_receipt(receipt, body["signature"], key, body["manifest"]))
    altered = {**receipt, "resources": {**receipt["resources"], "timings": {**TIMINGS, "model_load_seconds": 0}}}
    failed = [c.name for c in check_receipt(altered, body["signature"], key, body["manifest"]) if not c.ok]
    assert failed == ["coordinator signature"], "the time line is signed like everything else"


async def test_a_failed_job_reports_its_timings_too_and_none_is_null(world: World) -> None:
    failed = await world.finished(
        package_files(), verb="fail", reason="runtime_error", timings={"setup_seconds": 0.1, "model_warm": None}
    )
    receipt = (await world.http.get(f"/v1/jobs/{failed.job_id}/receipt", headers=failed.headers)).json()["receipt"]
    assert receipt["resources"]["timings"] == {
        "setup_seconds": 0.1,
        "model_load_seconds": None,
        "model_warm": None,
        "run_seconds": None,
        "upload_seconds": None,
    }
    plain = await world.finished(package_files())
    receipt = (await world.http.get(f"/v1/jobs/{plain.job_id}/receipt", headers=plain.headers)).json()["receipt"]
    assert receipt["resources"]["timings"] is None


async def test_malformed_timings_are_refused_and_change_nothing(world: World) -> None:
    job_id, headers, miner, lease_id = await world.running()
    for timings in (
        {"run_seconds": -1},
        {"run_seconds": 10**9},
        {"run_seconds": "soon"},
        {"model_warm": "yes"},
        {"gpu_seconds": 3},
        [1, 2],
    ):
        refused = await miner.finish(job_id, lease_id, package_files(), timings=timings)
        assert refused.status_code == 422, (timings, refused.text)
        assert "timings" in refused.text
    job = (await world.http.get(f"/v1/jobs/{job_id}", headers=headers)).json()
    assert job["status"] == "running" and job["cost"] is None


def test_a_receipt_signed_before_timings_were_recorded_still_verifies() -> None:
    """An old receipt has no `resources.timings` key at all: the signature covers the document as it is."""
    key = Ed25519PrivateKey.generate()
    public = public_key_text(key)
    manifest = {"job_id": "job_1", "miner_id": "miner_1", "files": []}
    old = {
        "type": "aitbc.receipt",
        "version": 1,
        "job_id": "job_1",
        "miner_id": "miner_1",
        "miner_public_key": public,
        "miner_signature": sign(key, manifest),
        "manifest_sha256": digest(manifest),
        "resources": {"wall_seconds": 1.0, "reported_by_miner": None},
    }
    assert all(check.ok for check in check_receipt(old, sign_receipt(key, old), public, manifest))
    new = {**old, "resources": {**old["resources"], "timings": TIMINGS}}
    assert all(check.ok for check in check_receipt(new, sign_receipt(key, new), public, manifest))


def test_migration_0013_adds_and_drops_the_timings_column(database_url: str) -> None:
    migrate(database_url)
    engine = sync_engine(database_url)

    def columns() -> set[str]:
        with engine.connect() as connection:
            return {column["name"] for column in connection.dialect.get_columns(connection, "job_results")}

    try:
        assert "timings" in columns()
        _migrate_to(engine, "0013", down=True)
        assert "timings" not in columns() and "usage" in columns()
        _migrate_to(engine, "head")
        assert "timings" in columns()
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM job_results")).scalar_one() == 0
    finally:
        engine.dispose()
