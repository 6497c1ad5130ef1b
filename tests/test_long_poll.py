"""Long polls over a real socket: a miner that hangs up mid-claim is given no job."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.api.app import create_app
from aitbc.domain.manifest import public_key_text
from aitbc.domain.plans import Role
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.support.served import served_app_in_thread
from tests.support.waiting import wait_until


async def _keys(settings: Settings) -> tuple[str, str]:
    async with coordinator_session(settings) as coordinator:
        client = (await coordinator.accounts.create_key("alice", Role.CLIENT)).secret
        miner = (await coordinator.accounts.create_key("farm", Role.MINER)).secret
        return client, miner


def test_a_miner_that_hangs_up_mid_claim_gets_no_job(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    client_key, miner_key = asyncio.run(_keys(settings))
    app = create_app(settings)
    with served_app_in_thread(app) as url:
        hub = app.state.coordinator.hub
        miner = httpx.Client(base_url=url, headers={"X-Api-Key": miner_key}, timeout=30)
        miner_id = miner.post(
            "/v1/miners/register",
            json={
                "name": "leaver",
                "runtimes": ["command"],
                "public_key": public_key_text(Ed25519PrivateKey.generate()),
            },
        ).json()["miner_id"]

        async def claim_then_hang_up() -> None:
            async with httpx.AsyncClient(base_url=url, headers={"X-Api-Key": miner_key}) as poller:
                request = asyncio.create_task(
                    poller.post(f"/v1/miners/{miner_id}/claim", json={"max_jobs": 1, "wait_seconds": 30})
                )
                while hub.claimers_waiting == 0:  # the claim found the queue empty and sleeps
                    await asyncio.sleep(0.01)
                request.cancel()  # the miner stops: its connection closes mid-poll

        asyncio.run(claim_then_hang_up())
        wait_until(lambda: hub.claimers_waiting == 0, 10, what="the coordinator to notice the hang-up")
        with httpx.Client(base_url=url, headers={"X-Api-Key": client_key}) as client:
            job_id = client.post("/v1/jobs", json={"type": "command", "input": "x"}).json()["job_id"]
            job = client.get(f"/v1/jobs/{job_id}").json()  # nobody was left asleep to take it
        assert (job["status"], job["miner_id"]) == ("pending", None)
        claimed = miner.post(f"/v1/miners/{miner_id}/claim", json={"max_jobs": 1, "wait_seconds": 0}).json()["jobs"]
        assert [c["job_id"] for c in claimed] == [job_id]  # a miner that is still there gets it
        miner.close()
