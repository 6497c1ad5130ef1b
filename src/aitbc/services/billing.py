"""Billing: quotes and holds at submit, settlement when a job ends, grants, balances and the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from aitbc.domain.accounts import Account, Miner, Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import InvalidInput, NotFound
from aitbc.domain.job import FailureReason, Job, JobSpec, JobStatus
from aitbc.domain.money import MAX_BALANCE, display, from_units, to_units
from aitbc.domain.plans import Plan
from aitbc.domain.pricing import (
    BilledInterval,
    PriceTable,
    Settlement,
    billable_seconds,
    billed_interval,
    is_billable,
    settle,
)
from aitbc.storage.interfaces import AccountStore, LedgerEntry, LedgerStore, MinerStore, StoredLedgerEntry

PLATFORM_ACCOUNT = "aitbc-platform"
MAX_LEDGER_PAGE = 10000


@dataclass(frozen=True)
class Quote:
    rate_per_second: Decimal
    max_cost: Decimal


@dataclass(frozen=True)
class Balance:
    account: Account
    available: Decimal
    held: Decimal

    @property
    def total(self) -> Decimal:
        return self.available + self.held


class BillingService:
    def __init__(
        self, ledger: LedgerStore, accounts: AccountStore, miners: MinerStore, clock: Clock, prices: PriceTable
    ) -> None:
        self._ledger = ledger
        self._accounts = accounts
        self._miners = miners
        self._clock = clock
        self.prices = prices
        self._platform_id: str | None = None

    def quote(self, spec: JobSpec) -> Quote:
        rate = self.prices.rate_per_second(spec.requirements, spec.priority)
        return Quote(
            rate_per_second=rate, max_cost=self.prices.hold(spec.requirements, spec.priority, spec.timeout_seconds)
        )

    async def _platform_account_id(self) -> str:
        if self._platform_id is None:
            account, _ = await self._accounts.ensure_account(PLATFORM_ACCOUNT, Plan.ENTERPRISE, self._clock.now())
            self._platform_id = account.id
        return self._platform_id

    async def settle(
        self,
        job: Job,
        target: JobStatus,
        reason: FailureReason | None,
        ended_at: datetime,
        reported_start: datetime | None = None,
        reported_end: datetime | None = None,
        miners: dict[str, Miner | None] | None = None,
    ) -> tuple[Settlement, BilledInterval | None, list[LedgerEntry]]:
        """What ending `job` in `target` moves: its release, the miner's credit and the platform's fee; and the
        interval it was charged for: the miner's reported run times, within the started→ended we observed.
        `miners`: miners already read (a batch of one miner's jobs reads it once), and where to keep this one."""
        miners = {} if miners is None else miners
        if job.miner_id and job.miner_id not in miners:
            miners[job.miner_id] = await self._miners.get_miner(job.miner_id)
        miner = miners.get(job.miner_id) if job.miner_id else None
        interval = billed_interval(job.started_at, ended_at, reported_start, reported_end)
        if not is_billable(target, reason) or miner is None:
            interval = None
        seconds = billable_seconds(interval.start, interval.end, job.spec.timeout_seconds) if interval else 0
        miner_gpu = miner.capabilities.gpus[0].model if miner and miner.capabilities.gpus else None
        rate = self.prices.rate_per_second(job.spec.requirements, job.spec.priority, miner_gpu)
        settlement = settle(job.max_cost, rate, seconds, self.prices.fee_rate)
        entries = [
            LedgerEntry(
                job.account_id,
                "release",
                to_units(settlement.release),
                job.id,
                f"charged {settlement.charge} for {seconds} s; the rest of the hold returns",
                charged_units=to_units(settlement.charge),
            ),
        ]
        if miner is not None and settlement.miner_credit > 0:
            entries.append(
                LedgerEntry(
                    miner.account_id, "payout", to_units(settlement.miner_credit), job.id, f"job run on {miner.id}"
                )
            )
        if settlement.fee > 0:
            entries.append(
                LedgerEntry(
                    await self._platform_account_id(), "fee", to_units(settlement.fee), job.id, f"fee on job {job.id}"
                )
            )
        return settlement, interval, entries

    async def grant(self, account_name: str, amount: Decimal, memo: str = "") -> Balance:
        if amount <= 0:
            raise InvalidInput("a grant must be a positive amount")
        account = await self._accounts.get_account_by_name(account_name)
        if account is None:
            raise NotFound(f"account {account_name!r} not found: create it with `aitbc admin keys create`")
        if (await self.balance_of(account)).available + amount > MAX_BALANCE:
            raise InvalidInput(f"a balance may not exceed {display(MAX_BALANCE)} AITBC")
        await self._ledger.append(
            [LedgerEntry(account.id, "grant", to_units(amount), None, memo or "credits granted")], self._clock.now()
        )
        return await self.balance_of(account)

    async def welcome(self, account: Account, amount: Decimal) -> None:
        if amount > 0:
            await self._ledger.append(
                [LedgerEntry(account.id, "grant", to_units(amount), None, "welcome credit")], self._clock.now()
            )

    async def balance_of(self, account: Account) -> Balance:
        available = from_units(await self._ledger.balance_units(account.id))
        held = from_units(await self._ledger.held_units(account.id))
        return Balance(account=account, available=available, held=held)

    async def balance(self, principal: Principal) -> Balance:
        return await self.balance_of(principal.account)

    async def entries(
        self, principal: Principal, since: datetime | None, until: datetime | None, limit: int, after_id: int
    ) -> tuple[list[StoredLedgerEntry], bool]:
        """A page of at most `limit` entries, and whether more follow (one more row is read to know)."""
        if not 1 <= limit <= MAX_LEDGER_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_LEDGER_PAGE}")
        entries = await self._ledger.entries(principal.account.id, since, until, limit + 1, after_id)
        return entries[:limit], len(entries) > limit
