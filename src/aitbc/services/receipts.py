"""Receipts: the coordinator's signed statement of what a finished job did, over the miner-signed manifest.

A receipt is signed once, the moment a job finishes: `run_forever` follows every job event on the hub and
signs the receipt of each job that reaches a terminal status with a result. The sweeper signs any it missed
(a replica that died, a dropped subscription), and a receipt asked for first is signed on the spot. It is
signed only if the miner's signature over the manifest verifies with the miner's key, and a racing signer's
receipt wins if it was stored first, so a job never has two.

The key is an interface here (`ReceiptSigner`): where it is kept is the wiring's business.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Protocol

from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock, isoformat_z
from aitbc.domain.errors import AitbcError, Conflict, NotFound
from aitbc.domain.job import Job, JobStatus
from aitbc.domain.manifest import canonical_bytes
from aitbc.domain.package import ResultsState
from aitbc.domain.receipts import ReceiptFacts, check_receipt, receipt_document
from aitbc.protocol.results import CoordinatorKeyView, ReceiptView
from aitbc.services.jobs import JobService
from aitbc.storage.interfaces import JobReadModel, MinerStore, ResultRecords, StoredResult
from aitbc.storage.results import ResultStore, StoredReceipt
from aitbc.streaming.hub import EventHub

log = logging.getLogger(__name__)
TERMINAL = {status.value for status in JobStatus if status.is_terminal}


class ReceiptSigner(Protocol):
    """The coordinator's Ed25519 key: its public half, the id receipts name it by, and signing."""

    @property
    def public_key(self) -> str: ...

    @property
    def key_id(self) -> str: ...

    def sign(self, document: dict[str, Any]) -> str: ...


def _interval(start: datetime | None, end: datetime | None) -> dict[str, str | None]:
    return {"started_at": isoformat_z(start), "ended_at": isoformat_z(end)}


def _charge(job: Job) -> dict[str, Any] | None:
    """What billing settled when the job ended (in the same transaction as its last move), and which times it
    used: the miner's reported run, capped by the coordinator's observed start and end (null: none reported,
    or nothing billed)."""
    if job.cost is None:
        return None
    return {
        "amount": format(job.cost, "f"),
        "currency": "AITBC",
        "billed_seconds": job.billed_seconds,
        "times": {
            "observed_by_coordinator": _interval(job.started_at, job.completed_at),
            "reported_by_miner": _interval(job.reported_started_at, job.reported_ended_at),
            "billed": _interval(job.billed_from, job.billed_until),
        },
    }


def _facts(job: Job, result: StoredResult, miner_public_key: str) -> ReceiptFacts:
    files = result.manifest.get("files", [])
    return ReceiptFacts(
        job_id=job.id,
        account_id=job.account_id,
        miner_id=result.miner_id,
        miner_public_key=miner_public_key,
        status=job.status.value,
        partial=result.partial,
        failure_reason=job.failure_reason.value if job.failure_reason else None,
        exit_code=job.exit_code,
        manifest_sha256=result.manifest_sha256,
        miner_signature=result.miner_signature,
        file_count=len(files),
        total_bytes=sum(int(f["size"]) for f in files),
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        gpu_type=job.spec.requirements.gpu_type,
        gpu_count=job.spec.requirements.gpu_count,
        attempts=job.attempt,
        charge=_charge(job),
        usage=result.usage,
        timings=result.timings,
    )


class ReceiptService:
    def __init__(
        self,
        jobs: JobReadModel,
        files: ResultRecords,
        results: ResultStore,
        miners: MinerStore,
        job_service: JobService,
        signer: ReceiptSigner,
        hub: EventHub,
        clock: Clock,
    ) -> None:
        self._jobs = jobs
        self._files = files
        self._results = results
        self._miners = miners
        self._job_service = job_service
        self._signer = signer
        self._hub = hub
        self._clock = clock

    def coordinator_key(self) -> CoordinatorKeyView:
        return CoordinatorKeyView(public_key=self._signer.public_key, key_id=self._signer.key_id)

    async def receipt(self, principal: Principal, job_id: str) -> ReceiptView:
        """The signed receipt and the manifest it vouches for: 409 while the job runs, 404 with no result."""
        job = await self._job_service.get(principal, job_id)
        result = await self._files.get_result(job.id)
        if result is None:
            if not job.is_terminal:
                raise Conflict(f"job {job.id} is {job.status.value}; its receipt is issued when it finishes")
            raise NotFound(f"job {job.id} ended without a signed result, so it has no receipt")
        stored = await self._results.get_receipt(job.id) or await self.issue(job, result)
        return ReceiptView(
            job_id=job.id,
            receipt=json.loads(stored.document),
            signature=stored.signature,
            key_id=stored.key_id,
            manifest=result.manifest,
        )

    async def issue(self, job: Job, result: StoredResult) -> StoredReceipt:
        """Sign the receipt of a finished job once; a racing issuer's receipt wins if it was stored first.
        It is only signed if the miner's signature over the manifest verifies with the miner's key."""
        miner = await self._miners.get_miner(result.miner_id)
        if miner is None:
            raise NotFound(f"miner {result.miner_id} of job {job.id} is not registered")
        facts = _facts(job, result, result.miner_public_key or miner.public_key)
        document = receipt_document(facts, self._clock.now(), self._signer.key_id)
        signature = self._signer.sign(document)
        broken = [c for c in check_receipt(document, signature, self._signer.public_key, result.manifest) if not c.ok]
        if broken:
            raise Conflict(f"cannot issue a receipt for job {job.id}: {broken[0].name} does not hold")
        receipt = StoredReceipt(
            job_id=job.id,
            document=canonical_bytes(document).decode(),
            signature=signature,
            key_id=self._signer.key_id,
            issued_at=self._clock.now(),
        )
        return await self._results.add_receipt(receipt)

    async def issue_for(self, job_id: str) -> None:
        """Sign the receipt of a finished job that has a result, unless it has one."""
        job = await self._jobs.get_job(job_id)
        if job is None or not job.is_terminal or job.results_state == ResultsState.NONE.value:
            return
        if await self._results.get_receipt(job.id) is not None:
            return
        result = await self._files.get_result(job.id)
        if result is not None:
            await self.issue(job, result)

    async def issue_missing(self, since: datetime, limit: int) -> int:
        """Sign the receipts of jobs that finished since `since` and have none yet; a job whose chain does not
        verify is logged and skipped."""
        issued = 0
        for job_id in await self._results.unreceipted(since, limit):
            job = await self._jobs.get_job(job_id)
            result = await self._files.get_result(job_id)
            if job is None or result is None:
                continue
            try:
                await self.issue(job, result)
            except (Conflict, NotFound) as error:
                log.warning("no receipt for job %s: %s", job_id, error.message)
                continue
            issued += 1
        return issued

    async def run_forever(self) -> None:
        """Follow the hub and sign each receipt as its job finishes."""
        while True:
            subscription = self._hub.subscribe(None)
            try:
                while (event := await subscription.next_event()) is not None:
                    if event.kind != "status" or event.status not in TERMINAL:
                        continue
                    try:
                        await self.issue_for(event.job_id)
                    except AitbcError as error:
                        log.warning("no receipt for job %s: %s", event.job_id, error.message)
                    except Exception:
                        log.exception("signing the receipt of job %s failed; the sweeper retries", event.job_id)
            finally:
                self._hub.unsubscribe(subscription)
            if self._hub.stopping:
                return
            # Dropped for falling behind: the sweeper signs what was missed; follow again.
