"""API calls for monitoring: the coordinator's health and version, who the key is, the caller's job metrics
and the live miners' room."""

from __future__ import annotations

from dataclasses import dataclass

from aitbc.protocol.monitor import HealthView, JobMetricsView, MinerMetricsView, WhoAmIView
from aitbc.sdk.calls import Call, model


@dataclass(frozen=True)
class Ping:
    """A health check's answer and how long the round trip took."""

    url: str
    status: str
    version: str
    round_trip_ms: float


def health() -> Call[HealthView]:
    return Call("GET", "/v1/health", model(HealthView))


def whoami() -> Call[WhoAmIView]:
    return Call("GET", "/v1/whoami", model(WhoAmIView))


def job_metrics() -> Call[JobMetricsView]:
    return Call("GET", "/v1/monitor/jobs", model(JobMetricsView))


def miner_metrics() -> Call[MinerMetricsView]:
    return Call("GET", "/v1/monitor/miners", model(MinerMetricsView))
