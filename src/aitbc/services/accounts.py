"""Accounts and API keys: authenticate a caller, create and revoke keys, set plans, first-start bootstrap.

`authenticate` answers from a cache of principals (see `principal_cache`); a revocation or a plan change made
here empties it on this replica at once and, through the hub, on the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from aitbc.domain.accounts import Account, ApiKey, Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from aitbc.domain.identifiers import hash_secret, new_api_key, new_key_id
from aitbc.domain.plans import Plan, Role
from aitbc.services.billing import BillingService
from aitbc.services.principal_cache import PrincipalCache
from aitbc.storage.interfaces import AccountStore
from aitbc.streaming.hub import EventHub


@dataclass(frozen=True)
class CreatedKey:
    """A new key: the secret is here once and never again."""

    secret: str
    key: ApiKey
    account: Account


class AccountService:
    def __init__(
        self,
        accounts: AccountStore,
        billing: BillingService,
        clock: Clock,
        hub: EventHub,
        welcome_credit: Decimal = Decimal(0),
    ) -> None:
        self._accounts = accounts
        self._billing = billing
        self._clock = clock
        self._hub = hub
        self._welcome_credit = welcome_credit
        self.principals = PrincipalCache(accounts.principals_version)
        hub.on_principals_changed(self.principals.clear)

    async def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise Unauthorized("missing API key: send it in the X-Api-Key header")
        key_hash = hash_secret(secret)
        await self.principals.refresh()
        cached = self.principals.get(key_hash)
        if cached is not None:
            return cached
        generation = self.principals.generation
        found = await self._accounts.find_key(key_hash)
        if found is None:
            raise Unauthorized("invalid API key")
        key, account = found
        if key.revoked_at is not None:
            raise Unauthorized("this API key was revoked")
        principal = Principal(account=account, key_id=key.id, role=key.role)
        self.principals.put(key_hash, principal, generation)
        return principal

    async def create_key(
        self, account_name: str, role: Role, plan: Plan | None = None, key_name: str | None = None
    ) -> CreatedKey:
        name = account_name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("account name must be 1 to 200 characters")
        now = self._clock.now()
        account, created = await self._accounts.ensure_account(name, plan, now)
        if created:
            await self._billing.welcome(account, self._welcome_credit)
        if plan is not None and account.plan is not plan:
            account = await self._accounts.set_plan(account.id, plan) or account
            self._hub.principals_changed()
        secret = new_api_key()
        key = await self._accounts.create_key(
            new_key_id(),
            account.id,
            key_name or f"{name}-{role.value}",
            role,
            hash_secret(secret),
            secret[:12],
            now,
        )
        return CreatedKey(secret=secret, key=key, account=account)

    async def list_keys(self, account_name: str | None = None) -> list[ApiKey]:
        account_id = None
        if account_name is not None:
            account_id = (await self.account_named(account_name)).id
        return await self._accounts.list_keys(account_id)

    async def revoke_key(self, key_id: str) -> ApiKey:
        key = await self._accounts.revoke_key(key_id, self._clock.now())
        if key is None:
            raise NotFound(f"API key {key_id} not found")
        self._hub.principals_changed()
        return key

    async def account_named(self, name: str) -> Account:
        account = await self._accounts.get_account_by_name(name)
        if account is None:
            raise NotFound(f"account {name!r} not found")
        return account

    async def list_accounts(self) -> list[Account]:
        return await self._accounts.list_accounts()

    async def set_plan(self, name: str, plan: Plan) -> Account:
        account = await self.account_named(name)
        changed = await self._accounts.set_plan(account.id, plan)
        self._hub.principals_changed()
        return changed or account

    async def bootstrap(self) -> list[CreatedKey]:
        """On an empty database, an admin key and a client key so a fresh install works at once."""
        if await self._accounts.count_keys() > 0:
            return []
        return [await self.create_key("admin", Role.ADMIN), await self.create_key("default", Role.CLIENT)]


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise Forbidden(f"this needs a {allowed} key; yours is a {principal.role.value} key")
