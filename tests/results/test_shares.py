"""Share links: download with no key, counted, listed, revocable one by one or all at once, expiring
(capped at the results' retention), 410 once revoked or expired, 404 when forged; only hashes stored."""

from __future__ import annotations

import io
import logging
import sys
import zipfile

from sqlalchemy import select

from aitbc.api.redaction import RedactSecrets
from aitbc.domain.clock import ManualClock
from aitbc.domain.identifiers import hash_secret
from aitbc.domain.plans import Plan
from aitbc.storage.sql.tables import result_shares
from tests.results.flow import World, package_files

DAY = 86400


async def test_a_link_downloads_without_a_key_and_is_counted(world: World) -> None:
    done = await world.finished(package_files())
    created = await world.http.post(
        f"/v1/jobs/{done.job_id}/shares", json={"expires_in_seconds": 3600}, headers=done.headers
    )
    assert created.status_code == 201, created.text
    share = created.json()
    token = share["token"]
    assert share["url"] == f"http://aitbc.test/v1/shared/{token}"
    assert share["state"] == "active" and share["capped"] is False and len(token) > 40
    shared = await world.http.get(f"/v1/shared/{token}")
    assert shared.status_code == 200 and shared.headers["referrer-policy"] == "no-referrer"
    archive = zipfile.ZipFile(io.BytesIO(shared.content))
    assert archive.read(f"{done.job_id}/result.txt") == done.files["result.txt"]
    resumed = await world.http.get(f"/v1/shared/{token}", headers={"Range": "bytes=100-"})
    assert resumed.status_code == 206 and resumed.content == shared.content[100:]
    await world.http.get(f"/v1/shared/{token}")
    listed = (await world.http.get(f"/v1/jobs/{done.job_id}/shares", headers=done.headers)).json()["shares"]
    assert [(s["share_id"], s["download_count"]) for s in listed] == [(share["share_id"], 2)]
    assert "token" not in listed[0]
    stored = await world.coordinator.database.read(
        lambda connection: connection.execute(select(result_shares.c.token_hash)).scalars().all()
    )
    assert stored == [hash_secret(token)], "only the token's hash is stored"


async def test_revoked_expired_and_forged_links(world: World, clock: ManualClock) -> None:
    done = await world.finished(package_files())

    async def share(seconds: int | None = None) -> dict[str, str]:
        body = {"expires_in_seconds": seconds} if seconds else {}
        response = await world.http.post(f"/v1/jobs/{done.job_id}/shares", json=body, headers=done.headers)
        assert response.status_code == 201, response.text
        made: dict[str, str] = response.json()
        return made

    first, second, third, short = await share(), await share(), await share(), await share(120)
    revoked = await world.http.delete(f"/v1/jobs/{done.job_id}/shares/{first['share_id']}", headers=done.headers)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    gone = await world.http.get(f"/v1/shared/{first['token']}")
    assert gone.status_code == 410 and "revoked" in gone.json()["message"]
    assert (await world.http.get(f"/v1/shared/{second['token']}")).status_code == 200
    clock.advance(121)
    expired = await world.http.get(f"/v1/shared/{short['token']}")
    assert expired.status_code == 410 and "expired" in expired.json()["message"]
    forged = second["token"][:-4] + ("abcd" if not second["token"].endswith("abcd") else "efgh")
    for token in (forged, "aitbcs_x", "not-a-token", "a" * 300):
        assert (await world.http.get(f"/v1/shared/{token}")).status_code == 404, token
    everything = await world.http.delete(f"/v1/jobs/{done.job_id}/shares", headers=done.headers)
    assert everything.json() == {"job_id": done.job_id, "revoked": 2}
    for made in (second, third):
        assert (await world.http.get(f"/v1/shared/{made['token']}")).status_code == 410
    states = {
        s["share_id"]: s["state"]
        for s in (await world.http.get(f"/v1/jobs/{done.job_id}/shares", headers=done.headers)).json()["shares"]
    }
    assert states == {
        first["share_id"]: "revoked",
        second["share_id"]: "revoked",
        third["share_id"]: "revoked",
        short["share_id"]: "expired",
    }
    unknown = await world.http.delete(f"/v1/jobs/{done.job_id}/shares/share_nope", headers=done.headers)
    assert unknown.status_code == 404


async def test_default_expiry_and_the_retention_cap(world: World, clock: ManualClock) -> None:
    await world.client("alice", Plan.FREE)
    done = await world.finished(package_files())
    clock.advance(DAY)
    default = (await world.http.post(f"/v1/jobs/{done.job_id}/shares", json={}, headers=done.headers)).json()
    job = (await world.http.get(f"/v1/jobs/{done.job_id}/results", headers=done.headers)).json()
    # 7 days from now would outlive the free plan's 7-day retention, counted from completion a day ago.
    assert default["capped"] is True and default["expires_at"] == job["results_expire_at"]
    short = (
        await world.http.post(f"/v1/jobs/{done.job_id}/shares", json={"expires_in_seconds": 3600}, headers=done.headers)
    ).json()
    assert short["capped"] is False
    too_short = await world.http.post(
        f"/v1/jobs/{done.job_id}/shares", json={"expires_in_seconds": 5}, headers=done.headers
    )
    assert too_short.status_code == 422


async def test_deleting_results_kills_their_links(world: World) -> None:
    done = await world.finished(package_files())
    token = (await world.http.post(f"/v1/jobs/{done.job_id}/shares", json={}, headers=done.headers)).json()["token"]
    assert (await world.http.delete(f"/v1/jobs/{done.job_id}/results", headers=done.headers)).status_code == 200
    response = await world.http.get(f"/v1/shared/{token}")
    assert response.status_code == 410
    again = await world.http.post(f"/v1/jobs/{done.job_id}/shares", json={}, headers=done.headers)
    assert again.status_code == 410 and "deleted" in again.json()["message"]


def test_share_tokens_are_kept_out_of_the_access_log() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/v1/shared/aitbcs_SECRET?x=1", "1.1", 200),
        None,
    )
    assert RedactSecrets().filter(record)
    assert "SECRET" not in record.getMessage() and "/v1/shared/<token>?x=1" in record.getMessage()


def test_keys_in_a_logged_traceback_are_redacted() -> None:
    secret = "aitbc_" + "k" * 43
    try:
        raise RuntimeError(f"GET /v1/jobs/ws?api_key={secret} failed")
    except RuntimeError:
        record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    assert RedactSecrets().filter(record)
    assert secret not in logging.Formatter().format(record)
    assert record.exc_text is not None and "api_key=<redacted>" in record.exc_text
