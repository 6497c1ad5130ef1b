"""The marketplace: the GPUs live miners offer now (`aitbc marketplace gpu list`), a job's quote on each GPU
model on offer (`aitbc client submit --use-marketplace`), and the runtimes on offer with the schemas of what
their jobs may hold (`aitbc marketplace runtimes`).

Everything is read from the in-memory view of live miners plus two aggregate queries (pending jobs grouped by
what they ask for, leased jobs counted per miner): counts only, so a client sees no other tenant's jobs. Prices
come from the coordinator's price table, as billing charges them. Queue counts and quotes match on hardware,
runtime and model only (`inputs=False`): the grouped pending jobs and a quoted request carry no input.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from aitbc.domain.accounts import Miner, Principal
from aitbc.domain.job import JobSpec, Requirements
from aitbc.domain.matching import can_take, gpu_matches, gpu_models, normalize_gpu_model, unmet_requirements
from aitbc.domain.pricing import PriceTable
from aitbc.domain.runtime_schemas import RuntimeSchemas
from aitbc.protocol.jobs import SubmitJobRequest
from aitbc.protocol.marketplace import (
    GpuGroup,
    GpuList,
    GpuOffer,
    MarketOption,
    MarketQuote,
    RuntimeList,
    RuntimeOffer,
    RuntimeSchemaOffer,
)
from aitbc.services.jobs import JobService, requested_type
from aitbc.services.miner_registry import LiveMiners
from aitbc.storage.interfaces import Demand, Load, MarketStore

QUEUE_SCAN = 10_000  # pending jobs the queue counts look at
IDLE = Load(jobs=0, gpus=0)
CENT = Decimal("0.01")


def hourly(price: Decimal) -> Decimal:
    """A price per hour as people write one: no trailing zeros past the cents (0.10, 0.04, 0.032, 1.00)."""
    cents = price.quantize(CENT)
    return cents if cents == price else price.normalize()


def queue_depth(miner: Miner, demand: list[Demand]) -> int:
    """Pending jobs this miner could take (those pinned to it, and the unpinned ones it can run)."""
    return sum(item.count for item in demand if can_take(item.spec, miner.id, miner.capabilities, inputs=False))


def _gpus_busy(miner: Miner, load: Load) -> int:
    return min(len(miner.capabilities.gpus), load.gpus)


class MarketplaceService:
    def __init__(self, market: MarketStore, miners: LiveMiners, jobs: JobService, prices: PriceTable) -> None:
        self._market = market
        self._miners = miners
        self._jobs = jobs
        self._prices = prices

    def _live(self) -> list[Miner]:
        return sorted(self._miners.live(self._jobs.miners_since()), key=lambda miner: (miner.name, miner.id))

    async def gpus(self, model: str | None, region: str | None, gpu_type: str | None) -> GpuList:
        """Every live miner that serves `model`, is in `region` and has a `gpu_type` GPU (each filter only when
        given), cheapest first, then the shortest queue."""
        listed = [
            miner
            for miner in self._live()
            if (model is None or model in miner.capabilities.models)
            and (region is None or miner.region == region.lower())
            and (gpu_type is None or any(gpu_matches(gpu_type, gpu.model) for gpu in miner.capabilities.gpus))
        ]
        if not listed:
            return GpuList(offers=[], queue_complete=True)
        demand, complete = await self._market.pending_demand(QUEUE_SCAN)
        loads = await self._market.miner_loads()
        offers = [self._offer(miner, demand, loads.get(miner.id, IDLE)) for miner in listed]
        offers.sort(key=lambda offer: (offer.price_per_hour, offer.queue))
        return GpuList(offers=offers, queue_complete=complete)

    def _offer(self, miner: Miner, demand: list[Demand], load: Load) -> GpuOffer:
        counted: dict[tuple[str, float], int] = {}
        for gpu in miner.capabilities.gpus:
            counted[(gpu.model, gpu.vram_gb)] = counted.get((gpu.model, gpu.vram_gb), 0) + 1
        groups = [
            GpuGroup(model=name, vram_gb=vram, count=count, price_per_hour=hourly(self._prices.hourly(name)))
            for (name, vram), count in counted.items()
        ]
        total = len(miner.capabilities.gpus)
        busy = _gpus_busy(miner, load)
        return GpuOffer(
            miner_id=miner.id,
            name=miner.name,
            region=miner.region,
            gpus=groups,
            gpu_count=total,
            gpus_busy=busy,
            gpus_free=total - busy,
            slots=miner.max_concurrency,
            slots_busy=min(miner.max_concurrency, load.jobs),
            runtimes=sorted(miner.capabilities.runtimes),
            models=sorted(miner.capabilities.models),
            price_per_hour=min((group.price_per_hour for group in groups), default=hourly(self._prices.cpu_hourly)),
            queue=queue_depth(miner, demand),
            last_seen_at=miner.last_seen_at,
        )

    def runtimes(self) -> RuntimeList:
        """Every runtime live miners offer, by name: how many miners, their models, and each distinct pair of
        schemas declared for it (the most miners first)."""
        live = self._live()
        offers: list[RuntimeOffer] = []
        for name in sorted({runtime for miner in live for runtime in miner.capabilities.runtimes}):
            offering = [miner for miner in live if name in miner.capabilities.runtimes]
            declared: dict[RuntimeSchemas, int] = {}
            for miner in offering:
                schemas = miner.capabilities.schemas_for(name)
                if schemas is not None:
                    declared[schemas] = declared.get(schemas, 0) + 1
            ranked = sorted(
                declared.items(), key=lambda item: (-item[1], item[0].input or "", item[0].parameters or "")
            )
            offers.append(
                RuntimeOffer(
                    name=name,
                    miners=len(offering),
                    models=sorted({model for miner in offering for model in miner.capabilities.models}),
                    schemas=[RuntimeSchemaOffer(**schemas.as_json(), miners=count) for schemas, count in ranked],
                    undeclared=len(offering) - sum(declared.values()),
                )
            )
        return RuntimeList(runtimes=offers)

    async def quote(self, principal: Principal, request: SubmitJobRequest) -> MarketQuote:
        """The job of `request` (after its template and workflow) on each GPU model that live miners offer for it
        (only the one it names, with `requirements.gpu_type`; only its miner's, when pinned): cheapest first,
        then the shortest queue."""
        request = await self._jobs.with_presets(principal, request)
        wanted = request.requirements
        spec = JobSpec(
            type=requested_type(request),
            model=request.model,
            input=None,
            requirements=Requirements(wanted.gpu_type, wanted.gpu_count, wanted.min_vram_gb),
            priority=request.priority,
            timeout_seconds=request.timeout_seconds,
        )
        if wanted.miner_id is not None:
            spec = await self._jobs.pin(spec, wanted.miner_id)
        live = self._live()
        offered = _offered(spec, live)
        if not offered:
            return MarketQuote(best=None, options=[], reason=_nothing_on_offer(spec, live))
        demand, _ = await self._market.pending_demand(QUEUE_SCAN)
        loads = await self._market.miner_loads()
        options = [await self._option(spec, gpu, miners, demand, loads) for gpu, miners in offered.items()]
        options.sort(key=lambda option: (option.price_per_hour, option.queue, -option.gpus_free, option.gpu_type))
        return MarketQuote(best=options[0], options=options)

    async def _option(
        self, spec: JobSpec, gpu: str, miners: list[Miner], demand: list[Demand], loads: dict[str, Load]
    ) -> MarketOption:
        on_gpu = _on(spec, gpu)
        quote, seconds, estimated_cost = await self._jobs.estimate(on_gpu)
        rate = self._prices.rate_per_hour(on_gpu.requirements, on_gpu.priority)
        return MarketOption(
            gpu_type=gpu,
            miners=len(miners),
            gpus_free=sum(len(m.capabilities.gpus) - _gpus_busy(m, loads.get(m.id, IDLE)) for m in miners),
            queue=min(queue_depth(miner, demand) for miner in miners),
            price_per_hour=hourly(rate),
            max_cost=quote.max_cost,
            estimated_cost=estimated_cost,
            estimated_time_seconds=seconds,
        )


def _on(spec: JobSpec, gpu: str) -> JobSpec:
    """The job as submitted on this GPU model (a job that names its GPU model keeps its own spelling)."""
    if spec.requirements.gpu_type is not None:
        return spec
    return replace(spec, requirements=replace(spec.requirements, gpu_type=gpu))


def _offered(spec: JobSpec, live: list[Miner]) -> dict[str, list[Miner]]:
    """The GPU models (normalized) that live miners could run the job on, and those miners."""
    wanted = spec.requirements.gpu_type
    offered: dict[str, list[Miner]] = {}
    for miner in live:
        for gpu in gpu_models(miner.capabilities):
            if wanted is not None and not gpu_matches(wanted, gpu):
                continue
            if can_take(_on(spec, gpu), miner.id, miner.capabilities, inputs=False):
                offered.setdefault(gpu, []).append(miner)
    return offered


def _nothing_on_offer(spec: JobSpec, live: list[Miner]) -> str:
    """Why no GPU on offer can run the job, in words a user can act on."""
    if spec.requirements.miner_id is not None:
        live = [miner for miner in live if miner.id == spec.requirements.miner_id]
    with_gpus = [miner for miner in live if miner.capabilities.gpus]
    if not with_gpus:
        return "no connected miner offers a GPU" if spec.requirements.miner_id is None else "its miner has no GPU"
    wanted = spec.requirements.gpu_type
    on_offer = sorted({gpu for miner in with_gpus for gpu in gpu_models(miner.capabilities)})
    if wanted is not None and not any(gpu_matches(wanted, gpu) for gpu in on_offer):
        return f"no connected miner has a {normalize_gpu_model(wanted)} GPU (on offer: {', '.join(on_offer)})"
    reasons: list[str] = []
    for miner in with_gpus:
        for gpu in gpu_models(miner.capabilities):
            if wanted is None or gpu_matches(wanted, gpu):
                unmet = unmet_requirements(_on(spec, gpu), miner.capabilities, inputs=False)
                reasons.extend(r for r in unmet if r not in reasons)
    return "no connected miner with a GPU can run this job: " + "; ".join(reasons)
