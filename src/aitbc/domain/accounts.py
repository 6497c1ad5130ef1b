"""Accounts, API keys and registered miners as the rest of the system sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aitbc.domain.matching import Capabilities
from aitbc.domain.plans import Plan, Role


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    plan: Plan
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    id: str
    account_id: str
    name: str
    role: Role
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's account and role."""

    account: Account
    key_id: str
    role: Role


@dataclass(frozen=True)
class Miner:
    id: str
    account_id: str
    name: str
    capabilities: Capabilities
    max_concurrency: int
    public_key: str
    registered_at: datetime
    last_seen_at: datetime
    region: str | None = None  # where the miner says it is (`us-west`, `local`); None: it did not say
