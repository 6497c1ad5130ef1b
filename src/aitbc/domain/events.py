"""Events: every transition and progress update of a job, numbered per account so a stream can resume."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class JobEvent:
    seq: int
    account_id: str
    job_id: str
    kind: str  # "status", "progress" or "log"
    status: str
    progress: int
    at: datetime
    data: dict[str, Any]
