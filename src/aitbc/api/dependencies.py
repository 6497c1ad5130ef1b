"""Request-scoped dependencies: the coordinator and the authenticated caller with the right role.

Every one is an `async def` (FastAPI runs a plain `def` dependency in its thread pool: a thread hop per request)
and the role check is one dependency with the key header under it, not a chain: each level of a dependency
tree costs every request its own resolution.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from aitbc.domain.accounts import Principal
from aitbc.domain.plans import Role
from aitbc.services.accounts import require_role
from aitbc.wiring import Coordinator

api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False)


async def coordinator(request: Request) -> Coordinator:
    found: Coordinator = request.app.state.coordinator
    return found


CoordinatorDep = Annotated[Coordinator, Depends(coordinator)]


async def caller(request: Request, api_key: str | None) -> Principal:
    """The authenticated caller, counted against its plan's rate limit before anything else happens."""
    found: Coordinator = request.app.state.coordinator
    principal = await found.accounts.authenticate(api_key)
    found.rate_limiter.check(principal)
    return principal


def _with_role(*roles: Role):  # type: ignore[no-untyped-def]
    async def dependency(request: Request, api_key: Annotated[str | None, Depends(api_key_header)]) -> Principal:
        principal = await caller(request, api_key)
        require_role(principal, *roles)
        return principal

    return dependency


ClientDep = Annotated[Principal, Depends(_with_role(Role.CLIENT, Role.ADMIN))]
MemberDep = Annotated[Principal, Depends(_with_role(Role.CLIENT, Role.MINER, Role.ADMIN))]
MinerDep = Annotated[Principal, Depends(_with_role(Role.MINER, Role.ADMIN))]
AdminDep = Annotated[Principal, Depends(_with_role(Role.ADMIN))]
