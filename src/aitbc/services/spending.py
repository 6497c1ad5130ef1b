"""Spending limits: an account's monthly cap and alert threshold, as its owner (or an admin) sets them, and the
one place a spending alert leaves the coordinator.

The cap is enforced by the job store at submit, in the transaction that takes the hold; the alert is recorded
by the ledger write of the settlement that reaches it, with its `billing.alert` event. This service reads and
changes the settings, and `SpendingAlerts.emit` publishes the events that settlements recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aitbc.domain.accounts import Account
from aitbc.domain.clock import Clock
from aitbc.domain.errors import InvalidInput, NotFound
from aitbc.domain.events import JobEvent
from aitbc.domain.money import from_units, parse_amount, to_units
from aitbc.domain.spending import Spending, SpendingAlert, check_amount, month_label, month_of, next_month_start
from aitbc.protocol.billing import SpendingAlertView, SpendingView
from aitbc.storage.interfaces import SpendingStore
from aitbc.streaming.hub import EventHub

AlertListener = Callable[[JobEvent], None]


class SpendingAlerts:
    """Where every `billing.alert` goes once its settlement has committed: the account's event stream (this
    replica's subscribers, and the others' through the hub's relay), then each listener, in this process only,
    so a webhook sender subscribed here sends each alert once whichever replica settled it. The event is stored
    with the settlement (resumable by `seq`) and the alert in `spending_alerts`, whatever happens after."""

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self._listeners: list[AlertListener] = []

    def subscribe(self, listener: AlertListener) -> None:
        self._listeners.append(listener)

    def emit(self, events: Sequence[JobEvent]) -> None:
        for event in events:
            self._hub.publish(event)
            for listener in self._listeners:
                listener(event)


def spending_view(account: Account, spending: Spending, last: SpendingAlert | None) -> SpendingView:
    limit = spending.monthly_limit_units
    # Fired this month: as the settlements saw it, or (a threshold set back to one that fired) as recorded.
    recorded = last is not None and last.month == spending.month and last.threshold_units == spending.alert_at_units
    fired = spending.alert_fired_this_month or recorded
    return SpendingView(
        account=account.name,
        month=month_label(spending.month),
        monthly_limit=from_units(limit) if limit is not None else None,
        charged_this_month=from_units(spending.charged_units),
        held=from_units(spending.held_units),
        committed=from_units(spending.committed_units),
        remaining=from_units(max(0, limit - spending.committed_units)) if limit is not None else None,
        resets_at=next_month_start(spending.month),
        alert=SpendingAlertView(
            at=from_units(spending.alert_at_units) if spending.alert_at_units is not None else None,
            fired_this_month=fired,
            last_fired_at=last.fired_at if last else None,
            last_fired_month=month_label(last.month) if last else None,
            last_fired_threshold=from_units(last.threshold_units) if last else None,
            last_fired_charged=from_units(last.charged_units) if last else None,
            last_fired_job_id=last.job_id if last else None,
        ),
    )


class SpendingService:
    def __init__(self, store: SpendingStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def show(self, account: Account) -> SpendingView:
        return await self._view(account, await self._store.spending(account.id, month_of(self._clock.now())))

    async def set_monthly_limit(self, account: Account, amount: str | None) -> SpendingView:
        """Set the account's cap (`amount`, a decimal string as typed or sent) or, with None, remove it."""
        units = _units(amount, "a monthly limit")
        month = month_of(self._clock.now())
        return await self._view(account, await self._store.set_monthly_limit(account.id, units, month))

    async def set_alert(self, account: Account, amount: str | None) -> SpendingView:
        """Set the account's alert threshold or, with None, remove it."""
        units = _units(amount, "an alert threshold")
        month = month_of(self._clock.now())
        return await self._view(account, await self._store.set_alert(account.id, units, month))

    async def _view(self, account: Account, spending: Spending | None) -> SpendingView:
        return spending_view(account, self._found(account, spending), await self._store.last_alert(account.id))

    @staticmethod
    def _found(account: Account, spending: Spending | None) -> Spending:
        if spending is None:
            raise NotFound(f"account {account.name!r} not found")
        return spending


def _units(amount: str | None, what: str) -> int | None:
    if amount is None:
        return None
    try:
        value = parse_amount(amount)
    except ValueError as error:
        raise InvalidInput(f"{what}: {error}") from error
    return to_units(check_amount(value, what))
