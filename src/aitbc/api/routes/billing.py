"""Billing routes: the caller's balance and ledger; admins grant credits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import AdminDep, CoordinatorDep, MemberDep
from aitbc.api.routes.jobs import AfterQuery, FromQuery, ToQuery, parse_moment
from aitbc.domain.errors import InvalidInput
from aitbc.domain.money import parse_amount
from aitbc.protocol.billing import BalanceView, GrantRequest, LedgerEntryView, LedgerPage
from aitbc.services.admin_views import balance_view
from aitbc.services.billing import MAX_LEDGER_PAGE

router = APIRouter(route_class=CheckedRoute, prefix="/v1", tags=["billing"])


@router.get("/billing/balance", response_model=BalanceView)
async def balance(principal: MemberDep, coordinator: CoordinatorDep) -> BalanceView:
    return balance_view(await coordinator.billing.balance(principal))


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
    page, has_more = await coordinator.billing.entries(
        principal, parse_moment(from_, "from"), parse_moment(to, "to", end_of_day=True), limit, after
    )
    return LedgerPage(
        entries=[
            LedgerEntryView(
                entry_id=e.id,
                kind=e.kind,
                amount=coordinator.billing.amount(e.amount_units),
                job_id=e.job_id,
                memo=e.memo,
                created_at=e.created_at,
            )
            for e in page
        ],
        has_more=has_more,
        next_after=page[-1].id if has_more else None,
    )


@router.post("/admin/credits", response_model=BalanceView)
async def grant(body: GrantRequest, _admin: AdminDep, coordinator: CoordinatorDep) -> BalanceView:
    try:
        amount = parse_amount(body.amount)
    except ValueError as error:
        raise InvalidInput(str(error)) from error
    return balance_view(await coordinator.billing.grant(body.account, amount, body.memo))
