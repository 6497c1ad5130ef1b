"""API calls for billing and history: balance, ledger, credits, stats, timeline, retry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

from aitbc.protocol.billing import BalanceView, LedgerPage, SpendingView, StatsView
from aitbc.protocol.jobs import EventMessage, JobView
from aitbc.sdk.calls import Call, model, models


def balance() -> Call[BalanceView]:
    return Call("GET", "/v1/billing/balance", model(BalanceView))


def ledger(from_: str | None = None, to: str | None = None, limit: int = 100, after: int = 0) -> Call[LedgerPage]:
    params: dict[str, Any] = {"limit": limit, "after": after}
    params.update({k: v for k, v in (("from", from_), ("to", to)) if v})
    return Call("GET", "/v1/billing/ledger", model(LedgerPage), params=params)


def grant(account: str, amount: str, memo: str = "") -> Call[BalanceView]:
    return Call(
        "POST", "/v1/admin/credits", model(BalanceView), json={"account": account, "amount": amount, "memo": memo}
    )


def amount_text(amount: str | Decimal | int) -> str:
    """An amount as the API takes it: a plain decimal string (`Decimal("1E+1")` is sent as "10")."""
    return amount if isinstance(amount, str) else format(Decimal(amount), "f")


def spending() -> Call[SpendingView]:
    return Call("GET", "/v1/billing/limit", model(SpendingView))


def set_monthly_limit(amount: str | Decimal | int | None) -> Call[SpendingView]:
    if amount is None:
        return Call("DELETE", "/v1/billing/limit", model(SpendingView))
    return Call("PUT", "/v1/billing/limit", model(SpendingView), json={"monthly": amount_text(amount)})


def set_spending_alert(at: str | Decimal | int | None) -> Call[SpendingView]:
    if at is None:
        return Call("DELETE", "/v1/billing/alert", model(SpendingView))
    return Call("PUT", "/v1/billing/alert", model(SpendingView), json={"at": amount_text(at)})


def set_account_limit(account: str, amount: str | Decimal | int | None) -> Call[SpendingView]:
    path = f"/v1/admin/accounts/{quote(account, safe='')}/limit"
    if amount is None:
        return Call("DELETE", path, model(SpendingView))
    return Call("PUT", path, model(SpendingView), json={"monthly": amount_text(amount)})


def stats(days: int | None = None) -> Call[StatsView]:
    return Call("GET", "/v1/stats", model(StatsView), params={"days": days} if days else {})


def timeline(job_id: str) -> Call[list[EventMessage]]:
    return Call("GET", f"/v1/jobs/{job_id}/timeline", models(EventMessage))


def retry(job_id: str) -> Call[JobView]:
    return Call("POST", f"/v1/jobs/{job_id}/retry", model(JobView))


def export_params(
    status: list[str] | None,
    days: int | None,
    from_: str | None,
    to: str | None,
    format: str,
    tag: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"format": format}
    filters = (("status", status), ("days", days), ("from", from_), ("to", to), ("tag", tag), ("name", name))
    params.update({parameter: value for parameter, value in filters if value})
    return params
