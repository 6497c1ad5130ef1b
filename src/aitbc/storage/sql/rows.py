"""Turning rows into domain objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aitbc.domain.accounts import Account, ApiKey, Miner
from aitbc.domain.events import JobEvent
from aitbc.domain.job import FailureReason, Job, JobSpec, JobStatus, Priority, Requirements
from aitbc.domain.matching import Capabilities, Gpu
from aitbc.domain.money import from_units
from aitbc.domain.plans import Plan, Role
from aitbc.domain.runtime_schemas import schemas_from_json


def job_from_row(row: Any) -> Job:
    return job_from_mapping(row._mapping)


def job_from_mapping(m: Mapping[str, Any]) -> Job:
    spec = JobSpec(
        type=m["type"],
        model=m["model"],
        input=m["input"],
        input_file_id=m["input_file_id"],
        params=dict(m["params"] or {}),
        requirements=Requirements(
            gpu_type=m["gpu_type"],
            gpu_count=m["gpu_count"],
            min_vram_gb=m["min_vram_gb"],
            miner_id=m["pinned_miner_id"],
        ),
        priority=Priority(m["priority"]),
        timeout_seconds=m["timeout_seconds"],
        template=m["template"],
        workflow=m["workflow"],
        name=m["name"],
        tags=tuple(m["tags"] or ()),
    )
    return Job(
        id=m["id"],
        account_id=m["account_id"],
        spec=spec,
        status=JobStatus(m["status"]),
        progress=m["progress"],
        progress_message=m["progress_message"],
        miner_id=m["miner_id"],
        lease_id=m["lease_id"],
        lease_expires_at=m["lease_expires_at"],
        attempt=m["attempt"],
        max_attempts=m["max_attempts"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        assigned_at=m["assigned_at"],
        started_at=m["started_at"],
        completed_at=m["completed_at"],
        estimated_completion=m["estimated_completion"],
        queue_expires_at=m["queue_expires_at"],
        cancel_requested_at=m["cancel_requested_at"],
        failure_reason=FailureReason(m["failure_reason"]) if m["failure_reason"] else None,
        error=m["error"],
        exit_code=m["exit_code"],
        results_state=m["results_state"],
        result_lease_id=m["result_lease_id"],
        retry_of=m["retry_of"],
        max_cost=from_units(m["max_cost_units"]),
        estimated_cost=from_units(m["estimated_cost_units"]),
        estimated_time_seconds=m["estimated_time_seconds"],
        cost=from_units(m["cost_units"]) if m["cost_units"] is not None else None,
        billed_seconds=m["billed_seconds"],
        reported_started_at=m["reported_started_at"],
        reported_ended_at=m["reported_ended_at"],
        billed_from=m["billed_from"],
        billed_until=m["billed_until"],
    )


def event_from_row(row: Any) -> JobEvent:
    m = row._mapping
    return JobEvent(
        seq=m["seq"],
        account_id=m["account_id"],
        job_id=m["job_id"],
        kind=m["kind"],
        status=m["status"],
        progress=m["progress"],
        at=m["at"],
        data=dict(m["data"] or {}),
    )


def account_from_row(row: Any) -> Account:
    m = row._mapping
    return Account(id=m["id"], name=m["name"], plan=Plan(m["plan"]), created_at=m["created_at"])


def key_from_row(row: Any) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=m["id"],
        account_id=m["account_id"],
        name=m["name"],
        role=Role(m["role"]),
        prefix=m["prefix"],
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
        last_used_at=m["last_used_at"],
    )


def miner_from_row(row: Any) -> Miner:
    m = row._mapping
    capabilities = Capabilities.with_schemas(
        runtimes=frozenset(m["runtimes"]),
        models=frozenset(m["models"]),
        gpus=tuple(Gpu(model=g["model"], vram_gb=float(g["vram_gb"])) for g in m["gpus"]),
        schemas=schemas_from_json(m["schemas"]),
    )
    return Miner(
        id=m["id"],
        account_id=m["account_id"],
        name=m["name"],
        capabilities=capabilities,
        max_concurrency=m["max_concurrency"],
        public_key=m["public_key"],
        registered_at=m["registered_at"],
        last_seen_at=m["last_seen_at"],
        region=m["region"],
    )
