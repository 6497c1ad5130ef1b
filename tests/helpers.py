"""Test helpers that act through the real services (nothing is mocked); the HTTP side is in `tests.support`."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aitbc.domain.accounts import Principal
from aitbc.domain.manifest import public_key_text
from aitbc.domain.plans import Plan, Role
from aitbc.protocol.jobs import SubmitJobRequest
from aitbc.protocol.miners import RegisterRequest
from aitbc.wiring import Coordinator


async def principal(coordinator: Coordinator, account: str, role: Role, plan: Plan | None = None) -> Principal:
    created = await coordinator.accounts.create_key(account, role, plan)
    return await coordinator.accounts.authenticate(created.secret)


async def register_miner(
    coordinator: Coordinator,
    who: Principal,
    name: str = "m1",
    runtimes: tuple[str, ...] = ("command",),
    gpus: list[dict[str, Any]] | None = None,
) -> str:
    key = Ed25519PrivateKey.generate()
    request = RegisterRequest(name=name, runtimes=list(runtimes), gpus=gpus or [], public_key=public_key_text(key))
    return (await coordinator.miners.register(who, request)).miner_id


def job_request(**overrides: Any) -> SubmitJobRequest:
    body: dict[str, Any] = {"type": "command", "input": "echo hi", **overrides}
    return SubmitJobRequest.model_validate(body)
