"""The methods of `AsyncClient` that are one call each, or work written once as steps: results, shares, downloads
and verification of whole packages, history, billing and admin."""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar, Unpack

from aitbc.protocol.admin import AccountView, CreatedKeyView, KeyView
from aitbc.protocol.billing import BalanceView, LedgerEntryView, SpendingView, StatsView
from aitbc.protocol.cancels import CancelJobsResult
from aitbc.protocol.jobs import EventMessage, JobView, SubmittedJobView
from aitbc.protocol.marketplace import GpuList, MarketQuote, RuntimeList
from aitbc.protocol.monitor import JobMetricsView, MinerMetricsView, WhoAmIView
from aitbc.protocol.presets import TemplateView, WorkflowView
from aitbc.protocol.results import (
    CoordinatorKeyView,
    CreatedShareView,
    LogsView,
    ReceiptView,
    ResultPackageView,
    ResultsDeleted,
    RevokedShares,
    ShareList,
    ShareView,
)
from aitbc.sdk import billing_calls, calls, marketplace_calls, monitor_calls, preset_calls
from aitbc.sdk.calls import Call, SubmitOptions
from aitbc.sdk.downloads import Downloaded, Progress, file_path, zip_path
from aitbc.sdk.monitor_calls import Ping
from aitbc.sdk.packages import DownloadedPackage, PackageProgress, download_steps
from aitbc.sdk.preset_calls import PresetOptions, TemplateOptions
from aitbc.sdk.running import MAX_WAIT_SECONDS, run_steps
from aitbc.sdk.steps import Steps
from aitbc.sdk.verification import Verification, verify_steps

T = TypeVar("T")


class AsyncClientMethods:
    url: str

    async def _run(self, call: Call[T]) -> T:
        raise NotImplementedError

    async def _steps(self, steps: Steps[T]) -> T:
        raise NotImplementedError

    async def download(
        self, path: str, destination: Path, *, expected_sha256: str | None = None, progress: Progress | None = None
    ) -> Downloaded:
        raise NotImplementedError

    # -- running and cancelling ---------------------------------------------------------------------

    async def run(
        self,
        *,
        wait: int = MAX_WAIT_SECONDS,
        timeout: float | None = None,
        on_submitted: Callable[[SubmittedJobView], None] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> JobView:
        """Submit a job (the fields of `submit`) and wait until it ends: its final status object, with `result`
        (the text of its result.txt). Raises `JobFailedError` / `JobCanceledError` (each carrying `.job`) if it
        did not complete, and `JobStillRunning` if `timeout` seconds pass first. The coordinator holds each
        answer up to `wait` seconds (at most 60) and answers as soon as the job ends: no polling. `on_submitted`
        hears the submit's answer, with its `warnings`."""
        return await self._steps(run_steps(options, wait, timeout, on_submitted))

    async def cancel_matching(
        self,
        *,
        status: builtins.list[str] | None = None,
        tag: str | None = None,
        name: str | None = None,
        from_: str | None = None,
        to: str | None = None,
        all: bool = False,
        limit: int | None = None,
    ) -> CancelJobsResult:
        """Cancel your unfinished jobs that the filter matches (newest first, at most `limit`, 1000 a call;
        `more` in the answer: call again). With no filter, `all=True` must say you mean every one."""
        return await self._run(calls.cancel_matching(status, tag, name, from_, to, all, limit))

    # -- history ------------------------------------------------------------------------------------

    async def retry(self, job_id: str) -> JobView:
        return await self._run(billing_calls.retry(job_id))

    async def timeline(self, job_id: str) -> builtins.list[EventMessage]:
        return await self._run(billing_calls.timeline(job_id))

    async def stats(self, days: int | None = None) -> StatsView:
        return await self._run(billing_calls.stats(days))

    # -- monitoring ---------------------------------------------------------------------------------

    async def ping(self) -> Ping:
        """The coordinator's health and version, and the round trip's time (no key needed)."""
        started = time.perf_counter()
        health = await self._run(monitor_calls.health())
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        return Ping(self.url, health.status, health.version, elapsed)

    async def whoami(self) -> WhoAmIView:
        """The key's account, role and plan: whether the coordinator accepts it."""
        return await self._run(monitor_calls.whoami())

    async def job_metrics(self) -> JobMetricsView:
        """Your jobs at a glance: counts, queue places, the last hour's throughput, waits to start."""
        return await self._run(monitor_calls.job_metrics())

    async def miner_metrics(self) -> MinerMetricsView:
        """The live miners, their slots (free and busy) and GPUs."""
        return await self._run(monitor_calls.miner_metrics())

    # -- results ------------------------------------------------------------------------------------

    async def results(self, job_id: str) -> ResultPackageView:
        return await self._run(calls.result_package(job_id))

    async def receipt(self, job_id: str) -> ReceiptView:
        return await self._run(calls.receipt(job_id))

    async def coordinator_key(self) -> CoordinatorKeyView:
        return await self._run(calls.coordinator_key())

    async def delete_results(self, job_id: str) -> ResultsDeleted:
        return await self._run(calls.delete_results(job_id))

    async def logs(self, job_id: str, after: int = 0) -> LogsView:
        return await self._run(calls.logs(job_id, after))

    async def create_share(self, job_id: str, expires_in_seconds: int | None = None) -> CreatedShareView:
        return await self._run(calls.create_share(job_id, expires_in_seconds))

    async def list_shares(self, job_id: str) -> ShareList:
        return await self._run(calls.list_shares(job_id))

    async def revoke_share(self, job_id: str, share_id: str) -> ShareView:
        return await self._run(calls.revoke_share(job_id, share_id))

    async def revoke_shares(self, job_id: str) -> RevokedShares:
        return await self._run(calls.revoke_shares(job_id))

    async def download_file(
        self,
        job_id: str,
        path: str,
        destination: Path,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> Downloaded:
        return await self.download(
            file_path(job_id, path), destination, expected_sha256=expected_sha256, progress=progress
        )

    async def download_zip(self, job_id: str, destination: Path, progress: Progress | None = None) -> Downloaded:
        return await self.download(zip_path(job_id), destination, progress=progress)

    async def download_results(
        self,
        job_id: str,
        output: Path,
        *,
        format: str = "folder",
        checksum: bool = False,
        progress: PackageProgress | None = None,
        per_file: bool = False,
    ) -> DownloadedPackage:
        """The job's results (partial ones too) into `output`: a <job_id>/ folder (with `output.sha256` if
        `checksum`) or <job_id>.zip, every file's sha256 checked, the receipt saved beside it. The package comes
        in one request (the streamed zip, resumable); `per_file`: a request a file, complete files kept."""
        return await self._steps(download_steps(job_id, output, format, checksum, progress, per_file))

    async def verify(
        self, job_id: str, *, path: Path | None = None, receipt: ReceiptView | None = None, trust_new_key: bool = False
    ) -> Verification:
        """Check the job's results end to end against the coordinator key pinned on first use (`sdk/pinning.py`):
        the receipt, both signatures, and every file of the copy at `path` (else of the coordinator)."""
        return await self._steps(verify_steps(self.url, job_id, path, receipt, trust_new_key))

    # -- marketplace --------------------------------------------------------------------------------

    async def marketplace_gpus(
        self, *, model: str | None = None, region: str | None = None, gpu_type: str | None = None
    ) -> GpuList:
        """The GPUs live miners offer now (only those serving `model`, in `region`, with a `gpu_type` GPU)."""
        return await self._run(marketplace_calls.gpus(model, region, gpu_type))

    async def marketplace_runtimes(self) -> RuntimeList:
        """The runtimes live miners offer, with the JSON Schemas of the input and params their jobs may hold."""
        return await self._run(marketplace_calls.runtimes())

    async def quote(self, **options: Unpack[SubmitOptions]) -> MarketQuote:
        """What a job (`submit`'s options) would cost on each GPU model on offer for it, cheapest first;
        nothing is submitted. `best` is None, with `reason`, when no GPU on offer can run it."""
        return await self._run(marketplace_calls.quote(**options))

    # -- billing and admin --------------------------------------------------------------------------

    async def balance(self) -> BalanceView:
        return await self._run(billing_calls.balance())

    async def iter_ledger(self, from_: str | None = None, to: str | None = None) -> AsyncIterator[LedgerEntryView]:
        """The caller's ledger entries, oldest first, page by page."""
        after = 0
        while True:
            page = await self._run(billing_calls.ledger(from_, to, 1000, after))
            for entry in page.entries:
                yield entry
            if not page.has_more or page.next_after is None:
                return
            after = page.next_after

    async def grant_credits(self, account: str, amount: str, memo: str = "") -> BalanceView:
        return await self._run(billing_calls.grant(account, amount, memo))

    async def spending(self) -> SpendingView:
        """The caller's monthly spending limit, what counts toward it this month, and its alert."""
        return await self._run(billing_calls.spending())

    async def set_monthly_limit(self, amount: str | Decimal | int | None) -> SpendingView:
        """Cap what the caller's jobs may cost in a UTC month (charged plus held); None removes the cap."""
        return await self._run(billing_calls.set_monthly_limit(amount))

    async def set_spending_alert(self, at: str | Decimal | int | None) -> SpendingView:
        """A `billing.alert` event on the caller's stream when the month's charges reach `at`; None removes it."""
        return await self._run(billing_calls.set_spending_alert(at))

    async def set_account_limit(self, account: str, amount: str | Decimal | int | None) -> SpendingView:
        """Admin: set (or, with None, remove) the named account's monthly spending limit."""
        return await self._run(billing_calls.set_account_limit(account, amount))

    async def create_key(self, name: str, role: str, plan: str | None = None) -> CreatedKeyView:
        return await self._run(calls.create_key(name, role, plan))

    async def list_keys(self, account: str | None = None) -> builtins.list[KeyView]:
        return await self._run(calls.list_keys(account))

    async def revoke_key(self, key_id: str) -> KeyView:
        return await self._run(calls.revoke_key(key_id))

    async def list_accounts(self) -> builtins.list[AccountView]:
        return await self._run(calls.list_accounts())

    async def set_plan(self, name: str, plan: str) -> AccountView:
        return await self._run(calls.set_plan(name, plan))

    # -- presets: templates and workflows -----------------------------------------------------------

    async def create_template(
        self, name: str, *, workflow: str | None = None, replace: bool = False, **settings: Unpack[TemplateOptions]
    ) -> TemplateView:
        """Save job settings as the template `name`, for `submit(template=name, …)` (`replace`: overwrite one
        of that name; else a second one is a `Conflict`)."""
        return await self._run(preset_calls.create_template(name, workflow=workflow, replace=replace, **settings))

    async def list_templates(self) -> builtins.list[TemplateView]:
        return await self._run(preset_calls.list_templates())

    async def get_template(self, name: str) -> TemplateView:
        return await self._run(preset_calls.get_template(name))

    async def delete_template(self, name: str) -> TemplateView:
        return await self._run(preset_calls.delete_template(name))

    async def create_workflow(
        self,
        name: str,
        type: str,
        *,
        version: int | None = None,
        allowed_keys: builtins.list[str] | None = None,
        description: str = "",
        **settings: Unpack[PresetOptions],
    ) -> WorkflowView:
        """Define a workflow's next version (admin), or `version`; `allowed_keys` None: users may set any key."""
        call = preset_calls.create_workflow(
            name, type, version=version, allowed_keys=allowed_keys, description=description, **settings
        )
        return await self._run(call)

    async def list_workflows(self) -> builtins.list[WorkflowView]:
        return await self._run(preset_calls.list_workflows())
