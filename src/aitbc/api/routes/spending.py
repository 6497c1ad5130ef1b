"""Spending limit routes: the caller's monthly cap and alert threshold; admins set an account's cap."""

from __future__ import annotations

from fastapi import APIRouter

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import AdminDep, ClientDep, CoordinatorDep
from aitbc.protocol.billing import AlertRequest, MonthlyLimitRequest, SpendingView

router = APIRouter(route_class=CheckedRoute, prefix="/v1", tags=["billing"])


@router.get("/billing/limit", response_model=SpendingView)
async def show_limit(principal: ClientDep, coordinator: CoordinatorDep) -> SpendingView:
    """The caller's monthly spending limit, what counts toward it this month, and its alert."""
    return await coordinator.spending.show(principal.account)


@router.put("/billing/limit", response_model=SpendingView)
async def set_limit(body: MonthlyLimitRequest, principal: ClientDep, coordinator: CoordinatorDep) -> SpendingView:
    """Cap what the caller's jobs may cost in a UTC calendar month: a submit whose hold would take this month's
    charges plus what unfinished jobs hold past it is refused with 402."""
    return await coordinator.spending.set_monthly_limit(principal.account, body.monthly)


@router.delete("/billing/limit", response_model=SpendingView)
async def clear_limit(principal: ClientDep, coordinator: CoordinatorDep) -> SpendingView:
    return await coordinator.spending.set_monthly_limit(principal.account, None)


@router.get("/billing/alert", response_model=SpendingView)
async def show_alert(principal: ClientDep, coordinator: CoordinatorDep) -> SpendingView:
    return await coordinator.spending.show(principal.account)


@router.put("/billing/alert", response_model=SpendingView)
async def set_alert(body: AlertRequest, principal: ClientDep, coordinator: CoordinatorDep) -> SpendingView:
    """Publish a `billing.alert` event on the caller's event stream (`WS /v1/jobs/ws`) when this month's charges
    reach `at`: once per month and threshold."""
    return await coordinator.spending.set_alert(principal.account, body.at)


@router.delete("/billing/alert", response_model=SpendingView)
async def clear_alert(principal: ClientDep, coordinator: CoordinatorDep) -> SpendingView:
    return await coordinator.spending.set_alert(principal.account, None)


@router.put("/admin/accounts/{name}/limit", response_model=SpendingView)
async def set_account_limit(
    name: str, body: MonthlyLimitRequest, _admin: AdminDep, coordinator: CoordinatorDep
) -> SpendingView:
    account = await coordinator.accounts.account_named(name)
    return await coordinator.spending.set_monthly_limit(account, body.monthly)


@router.delete("/admin/accounts/{name}/limit", response_model=SpendingView)
async def clear_account_limit(name: str, _admin: AdminDep, coordinator: CoordinatorDep) -> SpendingView:
    account = await coordinator.accounts.account_named(name)
    return await coordinator.spending.set_monthly_limit(account, None)
