"""Marketplace models: the GPUs live miners offer now, and what a job would cost on each GPU model on offer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from aitbc.protocol.jobs import Money, Time


class GpuGroup(BaseModel):
    """GPUs of one model on a miner."""

    model: str = Field(description="as the miner declared it (`NVIDIA GeForce RTX 4090`, `a100`)")
    vram_gb: float
    count: int
    price_per_hour: Money = Field(description="AITBC per GPU-hour of this model, from the coordinator's price table")


class GpuOffer(BaseModel):
    """One live miner as the marketplace shows it: what it has, how much of it is busy, what it costs."""

    miner_id: str
    name: str
    region: str | None
    gpus: list[GpuGroup]
    gpu_count: int
    gpus_busy: int = Field(description="GPUs held by the jobs the miner is running")
    gpus_free: int
    slots: int = Field(description="jobs the miner runs at once")
    slots_busy: int
    runtimes: list[str]
    models: list[str]
    price_per_hour: Money = Field(
        description="AITBC an hour on this miner: the price of its cheapest GPU model, or the CPU rate without a GPU"
    )
    queue: int = Field(description="pending jobs this miner could take (counted over the queue's first 10,000)")
    last_seen_at: Time


class GpuList(BaseModel):
    offers: list[GpuOffer]
    queue_complete: bool = Field(description="false when more jobs were pending than the queue counts looked at")


class MarketOption(BaseModel):
    """One GPU model a job could run on now, and what the job would cost on it."""

    gpu_type: str
    miners: int = Field(description="live miners with this GPU that can run the job")
    gpus_free: int
    queue: int = Field(description="the fewest pending jobs any of those miners could take instead")
    price_per_hour: Money = Field(description="the job's rate: the GPU's price × GPU count × priority multiplier")
    max_cost: Money = Field(description="what submitting holds: the timeout at this rate")
    estimated_cost: Money
    estimated_time_seconds: int


class MarketQuote(BaseModel):
    """The GPU models on offer for a job, cheapest first (then the shortest queue); `best` is the first, or
    None, with `reason` saying why nothing live can run the job."""

    best: MarketOption | None
    options: list[MarketOption]
    reason: str | None = None


class RuntimeSchemaOffer(BaseModel):
    """One declaration of what a runtime takes, and how many live miners declared exactly it."""

    input: dict[str, Any] | bool | None = Field(
        description="JSON Schema (draft 2020-12) of the job's inline `input`; null: any (an uploaded file skips it)"
    )
    parameters: dict[str, Any] | bool | None = Field(
        description="JSON Schema of the job's `params` (`output_config` is not checked); null: any"
    )
    miners: int


class RuntimeOffer(BaseModel):
    """A runtime live miners offer: how many, the models they serve for it, and what its jobs may hold."""

    name: str
    miners: int
    models: list[str] = Field(description="the models the miners that offer it serve (they may serve others too)")
    schemas: list[RuntimeSchemaOffer] = Field(
        description="each distinct declaration, the most common first; a job must be valid for one of them, or run "
        "on a miner that declared none (`undeclared`)"
    )
    undeclared: int = Field(description="live miners offering it that declared no schemas: they take any input")


class RuntimeList(BaseModel):
    runtimes: list[RuntimeOffer]
