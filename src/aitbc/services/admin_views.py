"""Accounts, keys, balances and ledgers as the wire models admins and clients see.

The functions map one domain object each and are shared with the CLI's direct-on-the-database mode;
`AccountViews` answers the API's account, key and billing calls with them, one call per response.
"""

from __future__ import annotations

from datetime import datetime

from aitbc.domain.accounts import Account, ApiKey, Principal
from aitbc.domain.errors import InvalidInput
from aitbc.domain.money import from_units, parse_amount
from aitbc.domain.plans import Plan, Role
from aitbc.protocol.admin import AccountView, CreatedKeyView, KeyView
from aitbc.protocol.billing import BalanceView, LedgerEntryView, LedgerPage
from aitbc.services.accounts import AccountService, CreatedKey
from aitbc.services.billing import Balance, BillingService
from aitbc.storage.interfaces import StoredLedgerEntry


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


def created_key_view(created: CreatedKey) -> CreatedKeyView:
    return CreatedKeyView(
        api_key=created.secret,
        key_id=created.key.id,
        account=created.account.name,
        account_id=created.account.id,
        role=created.key.role,
        plan=created.account.plan,
        created_at=created.key.created_at,
    )


def balance_view(balance: Balance) -> BalanceView:
    return BalanceView(
        account=balance.account.name,
        plan=balance.account.plan.value,
        available=balance.available,
        held=balance.held,
        total=balance.total,
    )


def ledger_entry_view(entry: StoredLedgerEntry) -> LedgerEntryView:
    return LedgerEntryView(
        entry_id=entry.id,
        kind=entry.kind,
        amount=from_units(entry.amount_units),
        job_id=entry.job_id,
        memo=entry.memo,
        created_at=entry.created_at,
    )


class AccountViews:
    def __init__(self, accounts: AccountService, billing: BillingService) -> None:
        self._accounts = accounts
        self._billing = billing

    async def create_key(self, account_name: str, role: Role, plan: Plan | None) -> CreatedKeyView:
        return created_key_view(await self._accounts.create_key(account_name, role, plan))

    async def list_keys(self, account_name: str | None) -> list[KeyView]:
        return [key_view(key) for key in await self._accounts.list_keys(account_name)]

    async def revoke_key(self, key_id: str) -> KeyView:
        return key_view(await self._accounts.revoke_key(key_id))

    async def list_accounts(self) -> list[AccountView]:
        return [account_view(account) for account in await self._accounts.list_accounts()]

    async def set_plan(self, account_name: str, plan: Plan) -> AccountView:
        return account_view(await self._accounts.set_plan(account_name, plan))

    async def grant(self, account_name: str, amount: str, memo: str) -> BalanceView:
        """Grant `amount` (a decimal string, as the request carries it) to the named account."""
        try:
            value = parse_amount(amount)
        except ValueError as error:
            raise InvalidInput(str(error)) from error
        return balance_view(await self._billing.grant(account_name, value, memo))

    async def balance(self, principal: Principal) -> BalanceView:
        return balance_view(await self._billing.balance(principal))

    async def ledger(
        self, principal: Principal, since: datetime | None, until: datetime | None, limit: int, after_id: int
    ) -> LedgerPage:
        """A page of the caller's ledger, oldest first; `next_after` asks for the next one."""
        page, has_more = await self._billing.entries(principal, since, until, limit, after_id)
        return LedgerPage(
            entries=[ledger_entry_view(entry) for entry in page],
            has_more=has_more,
            next_after=page[-1].id if has_more else None,
        )
