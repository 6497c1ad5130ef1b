"""The one protocol miner double: a miner speaking the real HTTP protocol step by step, so that a test decides
when a job moves and can stop anywhere (the real miner, `aitbc miner run`, runs in a `Stack`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.manifest import public_key_text, sign


@dataclass
class HttpMiner:
    """A miner speaking the real HTTP protocol, step by step, so tests can stop it anywhere."""

    http: httpx.AsyncClient
    api_key: str
    name: str = "http-miner"
    runtimes: list[str] = field(default_factory=lambda: ["command"])
    gpus: list[dict[str, Any]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    region: str | None = None
    schemas: dict[str, Any] | None = None  # by runtime: {"input": schema, "parameters": schema}
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    miner_id: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key}

    async def register(self) -> str:
        body = {
            "name": self.name,
            "runtimes": self.runtimes,
            "gpus": self.gpus,
            "public_key": public_key_text(self.key),
            "models": self.models,
            **({"region": self.region} if self.region is not None else {}),
            **({"schemas": self.schemas} if self.schemas is not None else {}),
        }
        response = await self.http.post("/v1/miners/register", json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        self.miner_id = response.json()["miner_id"]
        return self.miner_id

    async def call(self, verb: str, job_id: str, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(f"/v1/miners/{self.miner_id}/jobs/{job_id}/{verb}", json=body, headers=self.headers)

    async def claim(self, max_jobs: int = 1, wait: float = 0) -> list[dict[str, Any]]:
        response = await self.http.post(
            f"/v1/miners/{self.miner_id}/claim", json={"max_jobs": max_jobs, "wait_seconds": wait}, headers=self.headers
        )
        assert response.status_code == 200, response.text
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs

    async def upload(self, job_id: str, lease_id: str, path: str, data: bytes) -> httpx.Response:
        return await self.http.put(
            f"/v1/miners/{self.miner_id}/jobs/{job_id}/files/{path}",
            content=data,
            headers={**self.headers, "X-Lease-Id": lease_id},
        )

    def manifest(self, job_id: str, files: dict[str, bytes]) -> tuple[dict[str, Any], str]:
        document = {
            "job_id": job_id,
            "miner_id": self.miner_id,
            "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files.items()],
        }
        return document, sign(self.key, document)

    async def finish(
        self, job_id: str, lease_id: str, files: dict[str, bytes], verb: str = "complete", **extra: Any
    ) -> httpx.Response:
        for path, data in files.items():
            uploaded = await self.upload(job_id, lease_id, path, data)
            assert uploaded.status_code == 200, uploaded.text
        manifest, signature = self.manifest(job_id, files)
        return await self.call(
            verb, job_id, {"lease_id": lease_id, "manifest": manifest, "signature": signature, "exit_code": 0, **extra}
        )
