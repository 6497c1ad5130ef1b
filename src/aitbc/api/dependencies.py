"""Request-scoped dependencies: the coordinator and the authenticated caller with the right role.

Every one is an `async def` (FastAPI runs a plain `def` dependency in its thread pool: a thread hop per request),
and the caller is one dependency, not a chain: each level of a dependency tree costs every request its own
resolution. It is the `X-Api-Key` security scheme itself (what the OpenAPI schema lists), resolving straight to
the authenticated principal.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from aitbc.domain.accounts import Principal
from aitbc.domain.plans import Role
from aitbc.services.accounts import require_role
from aitbc.wiring import Coordinator

API_KEY_HEADER = "X-Api-Key"


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


class ApiKeyCaller(APIKeyHeader):
    """The `X-Api-Key` scheme (named as FastAPI names `APIKeyHeader`'s) whose value is the caller, who must
    have one of `roles`."""

    def __init__(self, *roles: Role) -> None:
        super().__init__(name=API_KEY_HEADER, scheme_name=APIKeyHeader.__name__, auto_error=False)
        self.roles = roles

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        principal = await caller(request, request.headers.get(API_KEY_HEADER))
        require_role(principal, *self.roles)
        return principal


ClientDep = Annotated[Principal, Depends(ApiKeyCaller(Role.CLIENT, Role.ADMIN))]
MemberDep = Annotated[Principal, Depends(ApiKeyCaller(Role.CLIENT, Role.MINER, Role.ADMIN))]
MinerDep = Annotated[Principal, Depends(ApiKeyCaller(Role.MINER, Role.ADMIN))]
AdminDep = Annotated[Principal, Depends(ApiKeyCaller(Role.ADMIN))]
