"""uvicorn's server, with one change: when it stops, the coordinator's held requests are released first.

uvicorn waits for running requests before it tells the app (lifespan) that it stops, so a claim or
heartbeat long poll would hold the shutdown until the grace runs out ("timeout graceful shutdown exceeded")
and then be cancelled mid-request. Closing the event hub first makes every long poll answer at once.
"""

from __future__ import annotations

import socket

import uvicorn


class CoordinatorServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connection while the held requests answer
        coordinator = getattr(getattr(self.config.app, "state", None), "coordinator", None)
        if coordinator is not None:
            await coordinator.hub.close()
        await super().shutdown(sockets)
