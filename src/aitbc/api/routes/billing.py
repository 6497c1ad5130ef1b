"""Billing routes: the caller's balance and ledger; admins grant credits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import AdminDep, CoordinatorDep, MemberDep
from aitbc.api.routes.jobs import AfterQuery, FromQuery, ToQuery, parse_moment
from aitbc.protocol.billing import BalanceView, GrantRequest, LedgerPage
from aitbc.services.billing import MAX_LEDGER_PAGE

router = APIRouter(route_class=CheckedRoute, prefix="/v1", tags=["billing"])


@router.get("/billing/balance", response_model=BalanceView)
async def balance(principal: MemberDep, coordinator: CoordinatorDep) -> BalanceView:
    return await coordinator.account_views.balance(principal)


@router.get("/billing/ledger", response_model=LedgerPage)
async def ledger(
    principal: MemberDep,
    coordinator: CoordinatorDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LEDGER_PAGE)] = 100,
    after: AfterQuery = 0,
) -> LedgerPage:
    """The caller's ledger, oldest first; pass `after=<next_after>` for the next page."""
    return await coordinator.account_views.ledger(
        principal, parse_moment(from_, "from"), parse_moment(to, "to", end_of_day=True), limit, after
    )


@router.post("/admin/credits", response_model=BalanceView)
async def grant(body: GrantRequest, _admin: AdminDep, coordinator: CoordinatorDep) -> BalanceView:
    return await coordinator.account_views.grant(body.account, body.amount, body.memo)
