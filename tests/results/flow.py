"""Finished jobs made the way production makes them: a client submits over HTTP, a miner speaking the real
protocol claims, starts, uploads files and completes (or fails) with its signed manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from aitbc.domain.plans import Plan, Role
from aitbc.wiring import Coordinator
from tests.support.protocol_miner import HttpMiner


@dataclass
class Finished:
    job_id: str
    files: dict[str, bytes]
    headers: dict[str, str]
    miner: HttpMiner
    finish: httpx.Response


@dataclass
class World:
    """Makes keys through the in-process coordinator, or (for a server in another thread or process) through
    the admin API with `admin_key`."""

    http: httpx.AsyncClient
    coordinator: Coordinator | None = None
    admin_key: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    miners: int = 0

    async def make_key(self, account: str, role: Role, plan: Plan | None = None) -> str:
        if self.coordinator is not None:
            return (await self.coordinator.accounts.create_key(account, role, plan)).secret
        body = {"name": account, "role": role.value, "plan": plan.value if plan else None}
        response = await self.http.post("/v1/admin/keys", json=body, headers={"X-Api-Key": self.admin_key or ""})
        assert response.status_code == 201, response.text
        secret: str = response.json()["api_key"]
        return secret

    async def client(self, account: str = "alice", plan: Plan | None = None) -> dict[str, str]:
        if account not in self.keys:
            self.keys[account] = await self.make_key(account, Role.CLIENT, plan)
        return {"X-Api-Key": self.keys[account]}

    async def submit(self, account: str = "alice") -> tuple[str, dict[str, str]]:
        headers = await self.client(account)
        response = await self.http.post("/v1/jobs", json={"type": "command", "input": "echo hi"}, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["job_id"], headers

    async def running(self, account: str = "alice") -> tuple[str, dict[str, str], HttpMiner, str]:
        """A job a fresh miner has claimed and started: (job id, client headers, miner, lease id)."""
        job_id, headers = await self.submit(account)
        self.miners += 1
        miner_key = await self.make_key("farm", Role.MINER)
        miner = HttpMiner(self.http, miner_key, name=f"miner-{self.miners}")
        await miner.register()
        claimed = await miner.claim()
        assert [j["job_id"] for j in claimed] == [job_id]
        lease_id = claimed[0]["lease_id"]
        started = await miner.call("start", job_id, {"lease_id": lease_id})
        assert started.status_code == 200, started.text
        return job_id, headers, miner, lease_id

    async def finished(
        self,
        files: dict[str, bytes],
        account: str = "alice",
        verb: str = "complete",
        cancel: bool = False,
        **extra: Any,
    ) -> Finished:
        job_id, headers, miner, lease_id = await self.running(account)
        if cancel:
            canceled = await self.http.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
            assert canceled.status_code == 202, canceled.text
        finish = await miner.finish(job_id, lease_id, files, verb=verb, **extra)
        assert finish.status_code == 200, finish.text
        return Finished(job_id=job_id, files=files, headers=headers, miner=miner, finish=finish)


def package_files(artifact_size: int = 3000) -> dict[str, bytes]:
    """A package like a command job writes: metadata, main output, both logs and two artifacts."""
    return {
        "output.json": b'{"status": "completed"}',
        "result.txt": b"hello from the miner\n",
        "logs/stdout.log": b"line 1\nline 2\n",
        "logs/stderr.log": b"",
        "artifacts/model.bin": bytes(range(256)) * (artifact_size // 256 + 1),
        "artifacts/images/ä picture.txt": b"unicode name\n",
        'artifacts/名前 "quoted"; x.txt': b"names in any script\n",
    }
