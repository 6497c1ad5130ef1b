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
