"""Admin routes: accounts, plans and API keys."""

from __future__ import annotations

from fastapi import APIRouter

from aitbc.api.dependencies import AdminDep, CoordinatorDep
from aitbc.domain.accounts import Account, ApiKey
from aitbc.protocol.admin import AccountView, CreatedKeyView, CreateKeyRequest, KeyView, SetPlanRequest

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def key_view(key: ApiKey) -> KeyView:
    return KeyView(
        key_id=key.id,
        account_id=key.account_id,
        name=key.name,
        role=key.role,
        prefix=key.prefix,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


def account_view(account: Account) -> AccountView:
    return AccountView(account_id=account.id, name=account.name, plan=account.plan, created_at=account.created_at)


@router.post("/keys", status_code=201, response_model=CreatedKeyView)
async def create_key(body: CreateKeyRequest, _admin: AdminDep, coordinator: CoordinatorDep) -> CreatedKeyView:
    created = await coordinator.accounts.create_key(body.name, body.role, body.plan)
    return CreatedKeyView(
        api_key=created.secret,
        key_id=created.key.id,
        account=created.account.name,
        account_id=created.account.id,
        role=created.key.role,
        plan=created.account.plan,
        created_at=created.key.created_at,
    )


@router.get("/keys", response_model=list[KeyView])
async def list_keys(_admin: AdminDep, coordinator: CoordinatorDep, account: str | None = None) -> list[KeyView]:
    return [key_view(key) for key in await coordinator.accounts.list_keys(account)]


@router.delete("/keys/{key_id}", response_model=KeyView)
async def revoke_key(key_id: str, _admin: AdminDep, coordinator: CoordinatorDep) -> KeyView:
    return key_view(await coordinator.accounts.revoke_key(key_id))


@router.get("/accounts", response_model=list[AccountView])
async def list_accounts(_admin: AdminDep, coordinator: CoordinatorDep) -> list[AccountView]:
    return [account_view(account) for account in await coordinator.accounts.list_accounts()]


@router.post("/accounts/{name}/plan", response_model=AccountView)
async def set_plan(name: str, body: SetPlanRequest, _admin: AdminDep, coordinator: CoordinatorDep) -> AccountView:
    return account_view(await coordinator.accounts.set_plan(name, body.plan))
