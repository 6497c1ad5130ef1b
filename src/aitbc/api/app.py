"""The FastAPI app factory. Nothing happens at import: the coordinator is opened in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI

from aitbc.api.access_log import quiet_miner_polls
from aitbc.api.checked_route import CheckedRoute
from aitbc.api.errors import install_error_handlers
from aitbc.api.limits import BodyLimit
from aitbc.api.links import install_links
from aitbc.api.redaction import redacted_logs
from aitbc.api.routes import (
    admin,
    billing,
    history,
    jobs,
    marketplace,
    miners,
    monitor,
    presets,
    results,
    runtime,
    shared,
    spending,
)
from aitbc.api.websocket import router as websocket_router
from aitbc.domain.clock import Clock
from aitbc.protocol.batches import MAX_BATCH_BYTES
from aitbc.protocol.monitor import HealthView
from aitbc.settings import Settings
from aitbc.version import VERSION as __version__
from aitbc.wiring import open_coordinator

JSON_BODY_SLACK = 64 * 1024


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """`app.include_router(router)`, without the cost per request: FastAPI includes a router lazily, so every
    request walks each included router's routes with its own scope bookkeeping (half the CPU of a bare GET).
    Our routers' routes are already complete (prefix, tags, route class, dependencies): the app takes them as
    its own, matched like routes declared on the app."""
    assert not router.dependencies and not router.responses and not router._low_priority_routes
    app.router.routes.extend(router.routes)


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        coordinator = await open_coordinator(settings, clock)
        await coordinator.start_relay()
        app.state.coordinator = coordinator
        tasks = []
        if settings.run_reaper:
            await coordinator.reaper.grace_after_start()
            tasks.append(asyncio.create_task(coordinator.reaper.run_forever()))
        if settings.run_results_sweeper:
            tasks.append(asyncio.create_task(coordinator.retention.run_forever()))
            tasks.append(asyncio.create_task(coordinator.receipts.run_forever()))
        try:
            with redacted_logs(), quiet_miner_polls():
                yield
        finally:
            await coordinator.hub.close()  # held long polls and event streams answer now
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await coordinator.close()

    app = FastAPI(
        title="AITBC coordinator",
        version=__version__,
        description="Submit AI jobs, let miners run them, follow them live, fetch verified results.",
        lifespan=lifespan,
        # AITBC exports no OpenTelemetry: without this, every request looks the three global providers up.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.route_class = CheckedRoute
    install_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_inline_input_bytes + JSON_BODY_SLACK,
        larger={"/v1/jobs/batch": MAX_BATCH_BYTES},
    )
    for router in (
        history.router,
        billing.router,
        spending.router,
        jobs.router,
        miners.router,
        marketplace.router,
        admin.router,
        presets.router,
        runtime.router,
        monitor.router,
        results.router,
        shared.router,
        websocket_router,
    ):
        add_routes(app, router)
    install_links(app)

    @app.get("/v1/health", tags=["meta"], response_model=HealthView)
    async def health() -> HealthView:
        return HealthView(status="ok", version=__version__)

    return app
