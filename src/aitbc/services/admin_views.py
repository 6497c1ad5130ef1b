"""Accounts, keys and balances as the wire models admins and clients see (shared by the API and the CLI's
direct-on-the-database mode)."""

from __future__ import annotations

from aitbc.domain.accounts import Account, ApiKey
from aitbc.protocol.admin import AccountView, CreatedKeyView, KeyView
from aitbc.protocol.billing import BalanceView
from aitbc.services.accounts import CreatedKey
from aitbc.services.billing import Balance


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
