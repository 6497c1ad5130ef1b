"""Admin models: accounts and API keys."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from aitbc.domain.plans import Plan, Role
from aitbc.protocol.jobs import Strict, Timestamped


class CreateKeyRequest(Strict):
    name: str = Field(min_length=1, max_length=200, description="the account's name: created if new")
    role: Role
    plan: Plan | None = None


class CreatedKeyView(Timestamped):
    api_key: str
    key_id: str
    account: str
    account_id: str
    role: Role
    plan: Plan
    created_at: datetime


class KeyView(Timestamped):
    key_id: str
    account_id: str
    name: str
    role: Role
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class AccountView(Timestamped):
    account_id: str
    name: str
    plan: Plan
    created_at: datetime


class SetPlanRequest(Strict):
    plan: Plan
