"""`GET /v1/admin/runtime` (admin only): RSS, open files, asyncio tasks and hub subscriptions of this
coordinator process. `bench/soak.py` and the shutdown tests read it to see that load leaves nothing behind."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

from fastapi import APIRouter

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.dependencies import AdminDep, CoordinatorDep
from aitbc.protocol.runtime import RuntimeView

router = APIRouter(route_class=CheckedRoute, prefix="/v1/admin", tags=["admin"])
PROC_SELF = Path("/proc/self")


def _rss_bytes() -> int | None:
    try:
        resident_pages = int((PROC_SELF / "statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _open_files() -> int | None:
    try:
        return len(os.listdir(PROC_SELF / "fd")) - 1  # less the descriptor listdir itself holds open
    except OSError:
        return None


@router.get("/runtime", response_model=RuntimeView)
async def runtime(_admin: AdminDep, coordinator: CoordinatorDep) -> RuntimeView:
    # A GC pass first: a task only garbage keeps alive is not a live task (and a leaked one logs now).
    gc.collect()
    return RuntimeView(
        pid=os.getpid(),
        rss_bytes=_rss_bytes(),
        open_files=_open_files(),
        asyncio_tasks=len(asyncio.all_tasks()),
        subscriptions=coordinator.hub.subscriber_count,
    )
