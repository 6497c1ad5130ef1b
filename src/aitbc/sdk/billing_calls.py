"""API calls for billing and history: balance, ledger, credits, stats, timeline, retry."""

from __future__ import annotations

from typing import Any

from aitbc.protocol.billing import BalanceView, LedgerPage, StatsView
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
