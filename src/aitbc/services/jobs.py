"""Client use cases: submit a job, read it, list history, cancel it, upload input files."""

from __future__ import annotations

import builtins
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aitbc.blobs.interface import BlobStore
from aitbc.domain.accounts import Principal
from aitbc.domain.clock import Clock
from aitbc.domain.errors import AitbcError, Conflict, InvalidInput, NotFound, PayloadTooLarge, at_item
from aitbc.domain.events import JobEvent
from aitbc.domain.identifiers import looks_like_id, new_job_id
from aitbc.domain.job import Job, JobSpec, JobStatus, Requirements, is_url
from aitbc.domain.labels import unique_tags
from aitbc.domain.money import from_units, to_units
from aitbc.domain.plans import Plan, Role
from aitbc.protocol.jobs import SubmitJobRequest
from aitbc.services.admission import NoMinerCanRun, admit, offline_fit, waiting_reason
from aitbc.services.billing import BillingService, Quote
from aitbc.services.cancellation import CANCELABLE, Cancellation, Canceller
from aitbc.services.claiming import ClaimService
from aitbc.services.lifecycle import Lifecycle
from aitbc.services.miner_registry import LiveMiners
from aitbc.services.pinning import pinned_waiting_for, resolve_pin
from aitbc.services.presets import PresetResolver
from aitbc.services.run_estimates import RunEstimates
from aitbc.settings import Settings
from aitbc.storage.interfaces import (
    JobFilter,
    JobLifecycleStore,
    JobPage,
    JobReadModel,
    NewJob,
    ResultRecords,
    StoredFile,
)
from aitbc.streaming.hub import EventHub


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool
    warnings: tuple[str, ...] = ()  # what the client should know: e.g. no connected miner can run it now


# Request fields added after the hash was first defined: left out while unset, so that a request that does not
# use them hashes as it always did (a key retried across an upgrade, or between replicas of two versions).
_LATER_FIELDS = ("template", "workflow", "name", "tags", "queue_timeout_seconds")
_LATER_REQUIREMENTS = ("miner_id",)


def _request_hash(request: SubmitJobRequest) -> str:
    unset: dict[str, Any] = {name: True for name in _LATER_FIELDS if getattr(request, name) in (None, [])}
    requirements = {name: True for name in _LATER_REQUIREMENTS if getattr(request.requirements, name) is None}
    if requirements:
        unset["requirements"] = requirements
    document = request.model_dump(mode="json", exclude=unset)
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def requested_type(request: SubmitJobRequest) -> str:
    """The job's type (runtime): as given, or text generation for a job that names only a model."""
    job_type = request.type or ("text-generation" if request.model else None)
    if job_type is None:
        raise InvalidInput("give the job's type (runtime), e.g. 'command' or 'embedding', or a model")
    return job_type


class JobService:
    def __init__(
        self,
        jobs: JobLifecycleStore,
        reads: JobReadModel,
        files: ResultRecords,
        miners: LiveMiners,
        blobs: BlobStore,
        hub: EventHub,
        clock: Clock,
        settings: Settings,
        lifecycle: Lifecycle,
        billing: BillingService,
        presets: PresetResolver,
        claims: ClaimService | None = None,
    ) -> None:
        self._presets = presets
        self._claims = claims
        self._lifecycle = lifecycle
        self._billing = billing
        self._jobs = jobs
        self._reads = reads
        self._files = files
        self._miners = miners
        self._blobs = blobs
        self._hub = hub
        self._clock = clock
        self._settings = settings
        self.estimates = RunEstimates(reads)
        self._canceller = Canceller(reads, lifecycle, hub, clock, settings.cancel_grace_seconds)

    async def submit(
        self,
        principal: Principal,
        request: SubmitJobRequest,
        idempotency_key: str | None = None,
        retry_of: str | None = None,
    ) -> Submitted:
        now = self._clock.now()
        new, warnings = await self._new_job(principal, request, idempotency_key, retry_of, now)
        limits = self._settings.plan_limits[principal.account.plan]
        # A miner asleep in a claim here that can run the job is leased it by the insert's own commit.
        offer = await self._claims.offer(new.id, new.spec, now) if self._claims is not None else None
        try:
            job, event, moved = await self._lifecycle.insert(
                new, now, limits.max_concurrent_jobs, offer.moves if offer else ()
            )
        except BaseException:
            if offer is not None:
                offer.decline()
            raise
        handed = offer.settle(moved) if offer is not None else False
        if event is None and await self._jobs.request_hash(job.id) != new.request_hash:
            raise Conflict(
                f"Idempotency-Key {idempotency_key!r} was already used for a different request (job {job.id})"
            )
        if event is not None and not handed:
            await self._hub.work_available([job])
        # as stored: a handed job's moves are its next events
        return Submitted(job=job, created=event is not None, warnings=warnings)

    async def submit_many(
        self, principal: Principal, requests: Sequence[tuple[SubmitJobRequest, str | None]]
    ) -> list[Submitted]:
        """A batch: each (request, idempotency key) checked as `submit` checks one, then all stored in one
        transaction, or none; an error names the item (its index) that was refused."""
        now = self._clock.now()
        seen: dict[str, int] = {}
        presets: dict[str, Any] = {}  # the templates and workflows the batch's items named, each looked up once
        new: list[NewJob] = []
        warnings: list[tuple[str, ...]] = []
        for index, (request, key) in enumerate(requests):
            if key is not None and key in seen:
                raise at_item(InvalidInput(f"idempotency_key {key!r} is also item {seen[key]}'s"), index)
            if key is not None:
                seen[key] = index
            try:
                item, item_warnings = await self._new_job(principal, request, key, None, now, presets)
            except AitbcError as error:
                raise at_item(error, index) from None
            new.append(item)
            warnings.append(item_warnings)
        limits = self._settings.plan_limits[principal.account.plan]
        inserted = await self._jobs.insert_jobs(new, now, limits.max_concurrent_jobs)
        return await self._announce(inserted, warnings)

    async def _announce(
        self, inserted: Sequence[tuple[Job, JobEvent | None]], warnings: Sequence[tuple[str, ...]]
    ) -> list[Submitted]:
        """Publish the new jobs' events and wake waiting miners once (replays announce nothing)."""
        for _, event in inserted:
            if event is not None:
                self._hub.publish(event)
        if any(event is not None for _, event in inserted):
            await self._hub.work_available([job for job, event in inserted if event is not None])
        return [
            Submitted(job=job, created=event is not None, warnings=item_warnings)
            for (job, event), item_warnings in zip(inserted, warnings, strict=True)
        ]

    async def _new_job(
        self,
        principal: Principal,
        request: SubmitJobRequest,
        idempotency_key: str | None,
        retry_of: str | None,
        now: datetime,
        presets: dict[str, Any] | None = None,
    ) -> tuple[NewJob, tuple[str, ...]]:
        """The row a submit inserts and what it holds, after the checks that need no write; and the warnings
        it is accepted with (`services/admission.py`)."""
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
            raise InvalidInput("Idempotency-Key must be 1 to 200 characters")
        request_hash = _request_hash(request) if idempotency_key is not None else None  # of what the client sent
        template = workflow = None
        if request.template is not None or request.workflow is not None:
            resolved = await self._presets.resolve(principal, request, presets)
            request, template, workflow = resolved.request, resolved.template, resolved.workflow
        job_type = requested_type(request)
        inline_size = len(json.dumps(request.input).encode()) if request.input is not None else 0
        if inline_size > self._settings.max_inline_input_bytes:
            raise PayloadTooLarge(
                f"inline input is {inline_size} bytes, over the limit of {self._settings.max_inline_input_bytes}: "
                "upload it as a file (POST /v1/files) and pass input_file_id"
            )
        input_value = request.input
        if isinstance(input_value, str) and is_url(input_value):
            raise InvalidInput(
                "input is a URL: miners do not fetch inputs from the network. Upload the file (POST /v1/files) and "
                "pass its input_file_id, or send the text you mean"
            )
        file_id = request.input_file_id
        if file_id is None and isinstance(input_value, str) and looks_like_id(input_value, "file"):
            file_id, input_value = input_value, None
        if file_id is not None:
            stored = await self._files.get_input_file(file_id)
            if stored is None or stored.account_id != principal.account.id:
                raise NotFound(f"input file {file_id} not found")
        params = dict(request.params)
        if request.output_config is not None:
            params.setdefault("output_config", request.output_config.model_dump(exclude_none=True))
        spec = JobSpec(
            type=job_type,
            model=request.model,
            input=input_value,
            input_file_id=file_id,
            params=params,
            requirements=Requirements(
                request.requirements.gpu_type, request.requirements.gpu_count, request.requirements.min_vram_gb
            ),
            priority=request.priority,
            timeout_seconds=request.timeout_seconds,
            template=template,
            workflow=workflow,
            name=request.name,
            tags=unique_tags(request.tags),
        )
        if request.requirements.miner_id is not None:  # `--agent-id`: looked up only when a job names one
            spec = await self.pin(spec, request.requirements.miner_id)
        queue_seconds = self._queue_seconds(request.queue_timeout_seconds)
        warnings = await self._admit(spec, request.queue_timeout_seconds, now)
        quote, estimated_seconds, estimated_cost = await self.estimate(spec)
        new = NewJob(
            id=new_job_id(),
            account_id=principal.account.id,
            spec=spec,
            max_attempts=self._settings.max_attempts,
            created_at=now,
            queue_expires_at=now + timedelta(seconds=queue_seconds),
            request_hash=request_hash,
            idempotency_key=idempotency_key,
            retry_of=retry_of,
            max_cost_units=to_units(quote.max_cost),
            estimated_cost_units=to_units(estimated_cost),
            estimated_time_seconds=estimated_seconds,
            hold_units=to_units(quote.max_cost),
        )
        return new, warnings

    async def _admit(self, spec: JobSpec, queue_timeout_seconds: int | None, now: datetime) -> tuple[str, ...]:
        """`admission.admit` against the live miners (from memory); only when none can run the job, a look at
        the miners registered within the queue TTL, for one that can but is not connected now."""
        try:
            return admit(spec, self._miners.live(self.miners_since()), queue_timeout_seconds)
        except NoMinerCanRun:
            since = now - timedelta(seconds=self._settings.queue_ttl_seconds)
            warnings = offline_fit(spec, await self._miners.seen_since(since), now)
            if warnings is None:
                raise
            return warnings

    def _queue_seconds(self, asked: int | None) -> int:
        """How long a new job may wait for a miner: the client's queue timeout, within the coordinator's TTL."""
        limit = self._settings.queue_ttl_seconds
        if asked is not None and asked > limit:
            raise InvalidInput(
                f"queue_timeout_seconds is {asked}; this coordinator keeps a job queued at most {limit} s"
            )
        return limit if asked is None else asked

    async def with_presets(self, principal: Principal, request: SubmitJobRequest) -> SubmitJobRequest:
        """`request` with what its template and workflow give (as a submit resolves them), or as it is."""
        if request.template is None and request.workflow is None:
            return request
        return (await self._presets.resolve(principal, request)).request

    async def estimate(self, spec: JobSpec) -> tuple[Quote, int, Decimal]:
        """What the job holds and its rate (`quote`), how long it should run (the typical run of its type and
        model, within its timeout) and what that would cost."""
        quote = self._billing.quote(spec)
        typical = await self.estimates.typical_seconds(spec.type, spec.model)
        seconds = min(spec.timeout_seconds, max(1, round(typical))) if typical else spec.timeout_seconds
        return quote, seconds, min(quote.max_cost, from_units(to_units(quote.rate_per_second * seconds)))

    async def pin(self, spec: JobSpec, reference: str) -> JobSpec:
        """`spec` pinned to the miner `reference` names (see `services/pinning.py` for what is refused)."""
        miner = await resolve_pin(self._miners, reference, spec, self.miners_since(), self._clock.now())
        return replace(spec, requirements=replace(spec.requirements, miner_id=miner.id))

    async def get(self, principal: Principal, job_id: str) -> Job:
        job = await self._reads.get_job(job_id) if looks_like_id(job_id, "job") else None
        if job is None or (principal.role is not Role.ADMIN and job.account_id != principal.account.id):
            raise NotFound(f"job {job_id} not found")
        return job

    async def waiting_for(self, job: Job) -> str | None:
        """Why a pending job has not been taken, in one reason: no miner at all, none free, or what the closest
        miner lacks (from the in-memory view of live miners: no query)."""
        if job.status is not JobStatus.PENDING:
            return None
        miners = self._miners.live(self.miners_since())
        if job.spec.requirements.miner_id is not None:
            return pinned_waiting_for(job, miners)
        return waiting_reason(job.spec, miners)

    def miners_since(self) -> datetime:
        """Miners heard from before this moment count as gone."""
        return self._clock.now() - timedelta(seconds=self._settings.miner_active_seconds)

    async def get_with_plan(self, principal: Principal, job_id: str) -> tuple[Job, Plan]:
        """`get`, and the plan of the job's account, read in the same statement."""
        found = await self._reads.get_job_with_plan(job_id) if looks_like_id(job_id, "job") else None
        if found is None or (principal.role is not Role.ADMIN and found[0].account_id != principal.account.id):
            raise NotFound(f"job {job_id} not found")
        return found

    async def list(
        self,
        principal: Principal,
        statuses: list[JobStatus],
        created_from: datetime | None,
        created_to: datetime | None,
        limit: int,
        cursor: str | None,
        tag: str | None = None,
        name: str | None = None,
    ) -> JobPage:
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        where = self.filter(principal, statuses, created_from, created_to, tag, name)
        return await self._reads.list_jobs(where, limit, cursor)

    def filter(
        self,
        principal: Principal,
        statuses: Sequence[JobStatus],
        created_from: datetime | None,
        created_to: datetime | None,
        tag: str | None = None,
        name: str | None = None,
    ) -> JobFilter:
        """The caller's jobs that a list (or an export, or a cancel) asks for."""
        if created_from and created_to and created_from >= created_to:
            raise InvalidInput("'from' must be before 'to'")
        return JobFilter(
            account_id=principal.account.id,
            statuses=statuses,
            created_from=created_from,
            created_to=created_to,
            tag=tag,
            name=name,
        )

    async def cancel(self, principal: Principal, job_id: str) -> Cancellation:
        (canceled,) = await self._canceller.cancel_many([await self.get(principal, job_id)])
        if canceled is None:
            raise Conflict(f"job {job_id} kept changing while it was being canceled; try again")
        return canceled

    async def cancel_matching(self, where: JobFilter, limit: int) -> tuple[builtins.list[Cancellation], bool]:
        """Cancel the newest `limit` unfinished jobs that `where` matches (of its statuses, those a cancel
        moves a job out of; all of them if it names none), in one transaction a round; and whether more match.
        A job that kept moving through every round is a `failed` cancellation."""
        statuses = [status for status in where.statuses or CANCELABLE if status in CANCELABLE]
        if not statuses:
            return [], False
        page = await self._reads.list_jobs(replace(where, statuses=statuses), limit, None, with_total=False)
        answers = await self._canceller.cancel_many(page.jobs)
        done = [
            answer or Cancellation("failed", job, "the job kept changing while it was being canceled; try again")
            for job, answer in zip(page.jobs, answers, strict=True)
        ]
        return done, page.next_cursor is not None

    async def input_file(self, principal: Principal, file_id: str) -> StoredFile:
        stored = await self._files.get_input_file(file_id) if looks_like_id(file_id, "file") else None
        if stored is None or (principal.role is not Role.ADMIN and stored.account_id != principal.account.id):
            raise NotFound(f"file {file_id} not found")
        return stored
