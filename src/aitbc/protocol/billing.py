"""Billing and history models: balances, the ledger, credits, stats, retries."""

from __future__ import annotations

from pydantic import BaseModel, Field

from aitbc.protocol.jobs import Money, Strict, Time

# What `parse_amount` accepts and a grant can hold: plain digits, up to 9 decimal places, under MAX_BALANCE.
AMOUNT_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,9})?$"


class BalanceView(BaseModel):
    account: str
    plan: str
    available: Money = Field(description="what new jobs can hold")
    held: Money = Field(description="held by unfinished jobs")
    total: Money


class LedgerEntryView(BaseModel):
    entry_id: int
    kind: str
    amount: Money
    job_id: str | None
    memo: str
    created_at: Time


class LedgerPage(BaseModel):
    entries: list[LedgerEntryView]
    has_more: bool
    next_after: int | None


class GrantRequest(Strict):
    account: str = Field(min_length=1, max_length=200)
    amount: str = Field(
        pattern=AMOUNT_PATTERN,
        description='a positive decimal string, e.g. "12.5": at most 9 places, below 10^9, no sign or exponent',
    )
    memo: str = Field(default="", max_length=500)


class StatsView(BaseModel):
    total_jobs: int
    by_status: dict[str, int]
    finished: int
    success_rate: float | None = Field(description="completed / finished (completed, failed, canceled)")
    average_completion_seconds: float | None = Field(description="mean run time of completed jobs")
    total_spent: Money
    days: int | None


class MonthlyLimitRequest(Strict):
    monthly: str = Field(
        pattern=AMOUNT_PATTERN,
        description='the most the account may spend in a UTC calendar month (charged plus held), e.g. "5"',
    )


class AlertRequest(Strict):
    at: str = Field(
        pattern=AMOUNT_PATTERN,
        description='tell the account (a billing.alert event) when the month\'s charges reach this, e.g. "4"',
    )


class SpendingAlertView(BaseModel):
    at: Money | None = Field(description="the threshold (AITBC charged this month); null: no alert")
    fired_this_month: bool = Field(description="whether the threshold has fired this month")
    last_fired_at: Time | None = Field(description="when an alert of this account last fired")
    last_fired_month: str | None = Field(description="the month (YYYY-MM, UTC) it fired for")
    last_fired_threshold: Money | None
    last_fired_charged: Money | None = Field(description="what the month's charges were when it fired")
    last_fired_job_id: str | None = Field(description="the job whose charge reached the threshold")


class SpendingView(BaseModel):
    account: str
    month: str = Field(description="the UTC calendar month the figures are for (YYYY-MM)")
    monthly_limit: Money | None = Field(description="the cap on what the month may cost; null: none")
    charged_this_month: Money
    held: Money = Field(description="held now by unfinished jobs: the most they can still cost")
    committed: Money = Field(description="charged this month plus held: what counts toward the cap")
    remaining: Money | None = Field(description="what new jobs may still hold this month under the cap")
    resets_at: Time = Field(description="when the month ends and its charges stop counting")
    alert: SpendingAlertView
