"""Spending limits: an account's monthly cap on what it may spend, and the threshold at which it is told.

The month is the UTC calendar month. What counts toward the cap is what the account was charged this month plus
what its unfinished jobs hold now (a hold is the most its job can cost), so a submit that could take the month
past the cap is refused before the job runs, not after. The alert fires once per month and threshold, when
the month's charges reach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from aitbc.domain.clock import isoformat_z
from aitbc.domain.errors import InvalidInput, SpendingLimitReached
from aitbc.domain.money import MAX_BALANCE, display, from_units

ALERT_EVENT = "billing.alert"  # the kind of the event an alert publishes on the account's stream


def month_of(moment: datetime) -> int:
    """The UTC calendar month of `moment` as YYYYMM (202601): what the maintained monthly totals are keyed by."""
    utc = moment.astimezone(UTC)
    return utc.year * 100 + utc.month


def month_start(month: int) -> datetime:
    return datetime(month // 100, month % 100, 1, tzinfo=UTC)


def next_month_start(month: int) -> datetime:
    year, number = divmod(month, 100)
    return datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)


def month_label(month: int) -> str:
    return f"{month // 100:04d}-{month % 100:02d}"


def check_amount(amount: Decimal, what: str) -> Decimal:
    """A cap or threshold must be positive and below the largest balance (clearing one is its own call)."""
    if not amount.is_finite() or amount <= 0:
        raise InvalidInput(f"{what} must be a positive amount of AITBC; to remove it, clear it instead")
    if amount >= MAX_BALANCE:
        raise InvalidInput(f"{what} must be below {display(MAX_BALANCE)} AITBC")
    return amount


@dataclass(frozen=True)
class Spending:
    """An account's standing for `month`: its settings and what counts toward its cap (in nano-AITBC)."""

    account_id: str
    month: int
    monthly_limit_units: int | None
    alert_at_units: int | None
    charged_units: int  # charged this month
    held_units: int  # held now by unfinished jobs
    alert_fired_month: int | None = None  # the month the threshold last fired in

    @property
    def alert_fired_this_month(self) -> bool:
        return self.alert_at_units is not None and self.alert_fired_month == self.month

    @property
    def committed_units(self) -> int:
        return self.charged_units + self.held_units


@dataclass(frozen=True)
class SpendingAlert:
    """A threshold the month's charges reached: recorded once per account, month and threshold."""

    account_id: str
    month: int
    threshold_units: int
    charged_units: int
    job_id: str
    fired_at: datetime


def over_limit(
    limit_units: int, charged_units: int, held_units: int, adding_units: int, before_units: int = 0
) -> SpendingLimitReached:
    """The refusal of a submit whose hold (`adding_units`, `before_units` of its batch before it) would take the
    month past the cap: it names the cap, what is spent and held, and how to go on."""
    earlier = f", {display(from_units(before_units))} AITBC with the batch's jobs before it" if before_units else ""
    return SpendingLimitReached(
        f"this job can cost up to {display(from_units(adding_units))} AITBC{earlier}; with "
        f"{display(from_units(charged_units))} AITBC charged this month and {display(from_units(held_units))} AITBC "
        f"held by unfinished jobs that would pass your monthly spending limit of {display(from_units(limit_units))} "
        "AITBC: raise it (aitbc billing limit set --monthly AMOUNT), lower --timeout, or wait for jobs to finish "
        "or for the next month (UTC)"
    )


def alert_data(alert: SpendingAlert) -> dict[str, str]:
    """What a `billing.alert` event carries (amounts as decimal strings, as everywhere on the wire); a webhook
    delivering the same alert would send the same fields."""
    return {
        "alert": "monthly_spending",
        "month": month_label(alert.month),
        "threshold": display(from_units(alert.threshold_units)),
        "charged": display(from_units(alert.charged_units)),
        "fired_at": isoformat_z(alert.fired_at) or "",
    }
