"""How one job's time on this miner was spent, and which part of it the client pays for.

    began ── setup ──┬── model load ──┬── run ── ended ── upload
                     (asked for its model)   (model ready: billed from here)

A runtime whose work needs a model (the AI worker's) says when it asks for it and when it is ready; the run,
and the bill, start then: a client never pays for loading a model, nor for starting the worker that loads it.
A runtime with no model (a command, a re-encode) is billed from the job's start, as before. A job whose model
never became ready (it failed to load, or the job was stopped first) ran none of its work: nothing is billed.
The miner reports the billed start as `started_at`, which the coordinator only ever uses to shorten what it
observed (`aitbc.domain.pricing.billed_interval`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def _now() -> datetime:
    return datetime.now(UTC)


def _seconds(start: datetime, end: datetime) -> float:
    return round(max(0.0, (end - start).total_seconds()), 3)


class JobTimings:
    def __init__(self, began: datetime | None = None) -> None:
        self.began = began or _now()
        self.ended: datetime | None = None
        self.model_wanted = False
        self.model_ready_at: datetime | None = None
        self.model_load_seconds: float | None = None
        self.model_warm: bool | None = None

    def waits_for_model(self) -> None:
        """The runtime asked for its model: its work (and the bill) starts only once the model is ready."""
        self.model_wanted = True

    def model_ready(self, warm: bool, load_seconds: float) -> None:
        """The model is loaded (`warm`: it already was), having taken `load_seconds` by the worker's word, which
        cannot be more than the job has been here; the first call counts."""
        if self.model_ready_at is None:
            self.model_ready_at = _now()
            self.model_warm = warm
            here = _seconds(self.began, self.model_ready_at)
            self.model_load_seconds = 0.0 if warm else round(min(max(0.0, load_seconds), here), 3)

    def end(self) -> datetime:
        if self.ended is None:
            self.ended = _now()
        return self.ended

    @property
    def billed_from(self) -> datetime:
        """Where the billed run starts by this miner's clock: when its model was ready, else (no model) when
        the job began; a job whose model never got ready is billed from its end, so for nothing."""
        if self.model_ready_at is not None:
            return self.model_ready_at
        return self.end() if self.model_wanted else self.began

    def report(self) -> dict[str, Any]:
        """Seconds by part, as `complete`/`fail` report them (`upload_seconds` is added when delivered):
        setup + model load + run = the job's whole time on this miner, before its upload."""
        ended = self.end()
        billed_from = min(self.billed_from, ended)
        load = self.model_load_seconds if self.model_ready_at is not None else None
        setup = max(0.0, _seconds(self.began, billed_from) - (load or 0.0))
        return {
            "setup_seconds": round(setup, 3),
            "model_load_seconds": load,
            "model_warm": self.model_warm,
            "run_seconds": _seconds(billed_from, ended),
        }
