"""`Client` (blocking) and `AsyncClient`: the whole client API of a coordinator, typed.

from aitbc import Client
with Client() as client:                       # AITBC_URL / AITBC_API_KEY / profile
    job = client.submit(type="command", input="echo hi")
    for event in client.events(job_id=job.job_id):
        ...
"""

from __future__ import annotations

from aitbc.sdk.async_client import AsyncClient
from aitbc.sdk.sync_client import Client

__all__ = ["AsyncClient", "Client"]
