"""Admin models: accounts and API keys."""

from __future__ import annotations

from pydantic import BaseModel, Field

from aitbc.domain.plans import Plan, Role
from aitbc.protocol.jobs import Strict, Time


class CreateKeyRequest(Strict):
    name: str = Field(min_length=1, max_length=200, description="the account's name: created if new")
    role: Role
    plan: Plan | None = None


class CreatedKeyView(BaseModel):
    api_key: str
    key_id: str
    account: str
    account_id: str
    role: Role
    plan: Plan
    created_at: Time


class KeyView(BaseModel):
    key_id: str
    account_id: str
    name: str
    role: Role
    prefix: str
    created_at: Time
    revoked_at: Time | None


class AccountView(BaseModel):
    account_id: str
    name: str
    plan: Plan
    created_at: Time


class SetPlanRequest(Strict):
    plan: Plan
