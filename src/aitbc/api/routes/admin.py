"""Admin routes: accounts, plans and API keys."""

from __future__ import annotations

from fastapi import APIRouter

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import AdminDep, CoordinatorDep
from aitbc.protocol.admin import AccountView, CreatedKeyView, CreateKeyRequest, KeyView, SetPlanRequest

router = APIRouter(route_class=CheckedRoute, prefix="/v1/admin", tags=["admin"])


@router.post("/keys", status_code=201, response_model=CreatedKeyView)
async def create_key(body: CreateKeyRequest, _admin: AdminDep, coordinator: CoordinatorDep) -> CreatedKeyView:
    return await coordinator.account_views.create_key(body.name, body.role, body.plan)


@router.get("/keys", response_model=list[KeyView])
async def list_keys(_admin: AdminDep, coordinator: CoordinatorDep, account: str | None = None) -> list[KeyView]:
    return await coordinator.account_views.list_keys(account)


@router.delete("/keys/{key_id}", response_model=KeyView)
async def revoke_key(key_id: str, _admin: AdminDep, coordinator: CoordinatorDep) -> KeyView:
    return await coordinator.account_views.revoke_key(key_id)


@router.get("/accounts", response_model=list[AccountView])
async def list_accounts(_admin: AdminDep, coordinator: CoordinatorDep) -> list[AccountView]:
    return await coordinator.account_views.list_accounts()


@router.post("/accounts/{name}/plan", response_model=AccountView)
async def set_plan(name: str, body: SetPlanRequest, _admin: AdminDep, coordinator: CoordinatorDep) -> AccountView:
    return await coordinator.account_views.set_plan(name, body.plan)
