"""What `GET /v1/admin/runtime` reports: the coordinator process's own resource use, for soak runs and for
checking that held connections leave nothing behind (tasks, open files, subscriptions)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RuntimeView(BaseModel):
    pid: int
    rss_bytes: int | None = Field(description="resident memory; null where /proc is not available")
    open_files: int | None = Field(description="open file descriptors; null where /proc is not available")
    asyncio_tasks: int = Field(description="live asyncio tasks in the server's loop, counted after a GC pass")
    subscriptions: int = Field(description="event-hub subscribers (WebSocket watchers, the receipt signer)")
