"""The miner's model cache as a ledger: one LRU over every worker's models within one budget. Workers here
are stand-ins that hold what they are told to load and drop what they are told to unload, answering the
way the AI worker does (`admit` → the model's measured size → `settle` with what it holds); the real
workers run in test_model_cache_e2e.py."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aitbc.cli.main import app
from aitbc.domain.matching import Gpu
from aitbc.miner.timings import JobTimings
from aitbc.miner.worker.loaded_models import Models, footprint
from aitbc.miner.worker.messages import held_models
from aitbc.miner.worker.model_cache import DEFAULT_MAX_MODELS, ModelCache, default_budget, weight_files_size
from tests.miner.ai_extra import needs_ai

MB = 2**20


class Holder:
    """A worker as the cache sees it: what it holds, and every unload it was told."""

    def __init__(self, name: str, sizes: dict[str, int]) -> None:
        self.name = name
        self.sizes = sizes
        self.holds: dict[str, int] = {}
        self.unloaded: list[str] = []

    def unload(self, models: Sequence[str]) -> None:
        self.unloaded += models
        for model in models:
            self.holds.pop(model, None)

    def describe(self) -> str:
        return self.name

    def run(self, cache: ModelCache, model: str) -> bool:
        """One job with `model`, as the pool runs it; True when it was warm."""
        cache.admit(self, model)
        warm = model in self.holds
        self.holds[model] = self.sizes[model]
        cache.loaded(self, model, self.sizes[model])
        cache.settle(self, dict(self.holds))
        return warm


def test_a_budget_of_one_model_alternates_by_unloading_the_other() -> None:
    cache = ModelCache(budget_bytes=150 * MB)
    worker = Holder("w", {"a": 90 * MB, "b": 90 * MB})
    assert [worker.run(cache, model) for model in ("a", "a", "b", "a", "b", "b")] == [
        False,
        True,
        False,
        False,
        False,
        True,
    ]
    assert worker.unloaded == ["a", "b", "a"]
    assert cache.held() == ["b"] and worker.holds == {"b": 90 * MB}
    assert cache.used_bytes == 90 * MB <= cache.budget_bytes


def test_the_least_recently_used_goes_first_and_the_cache_never_passes_its_budget() -> None:
    sizes = {name: 40 * MB for name in "abcde"}
    cache = ModelCache(budget_bytes=100 * MB)
    worker = Holder("w", sizes)
    for model in "abcabdbe":
        worker.run(cache, model)
        assert cache.used_bytes <= 100 * MB and sum(worker.holds.values()) <= 100 * MB
    # Two fit: c unloads a, a unloads b, b unloads c, d unloads a; b is used again, so e unloads d.
    assert worker.unloaded == ["a", "b", "c", "a", "d"]
    assert cache.held() == ["b", "e"]


def test_a_model_in_use_by_a_running_job_is_never_unloaded() -> None:
    cache = ModelCache(budget_bytes=100 * MB)
    busy = Holder("busy", {"a": 80 * MB})
    other = Holder("other", {"b": 80 * MB})
    cache.admit(busy, "a")  # its job runs and holds "a" ...
    busy.holds["a"] = 80 * MB
    cache.loaded(busy, "a", 80 * MB)
    assert other.run(cache, "b") is False  # ... while another worker's job needs room
    assert busy.unloaded == [] and busy.holds == {"a": 80 * MB}
    assert other.unloaded == ["b"], "over budget with both: the one whose job ended is unloaded, never the busy one"
    cache.settle(busy, dict(busy.holds))
    assert cache.held() == ["a"] and cache.used_bytes == 80 * MB


def test_a_model_bigger_than_the_budget_runs_and_is_unloaded_when_its_job_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aitbc.miner.worker.model_cache")
    cache = ModelCache(budget_bytes=50 * MB)
    worker = Holder("w", {"huge": 80 * MB, "small": 10 * MB})
    assert worker.run(cache, "small") is False
    assert worker.run(cache, "huge") is False
    assert worker.unloaded == ["small", "huge"] and cache.held() == [] and cache.used_bytes == 0
    assert "over its budget" in caplog.text and "unloading huge" in caplog.text


def test_models_are_counted_across_workers_and_a_stopped_worker_takes_its_own() -> None:
    cache = ModelCache(budget_bytes=None, max_models=2)
    first, second = Holder("first", {"a": 1, "b": 1}), Holder("second", {"a": 1, "c": 1})
    first.run(cache, "a")
    second.run(cache, "a")  # the same model in another worker is another copy
    second.run(cache, "c")
    assert first.unloaded == ["a"] and cache.held(second) == ["a", "c"]
    cache.forget(second)
    assert cache.held() == []


def test_the_workers_word_wins_and_an_unload_in_flight_is_not_counted_back() -> None:
    cache = ModelCache(budget_bytes=100 * MB)
    worker = Holder("w", {"a": 60 * MB, "b": 60 * MB})
    cache.admit(worker, "a")
    cache.settle(worker, {})  # the job failed before its model loaded: nothing is held
    assert cache.held() == []
    worker.run(cache, "a")
    cache.admit(worker, "b")
    cache.loaded(worker, "b", 60 * MB)  # "a" is unloaded to make room for what "b" measured ...
    assert worker.unloaded == ["a"]
    cache.settle(worker, {"a": 60 * MB, "b": 60 * MB})  # ... though the answer was written before it applied
    assert cache.held() == ["b"]
    worker.run(cache, "a")  # asked again: loaded afresh and counted, "b" makes room
    assert cache.held() == ["a"]


def test_a_models_size_is_estimated_from_its_weight_files_until_measured(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * 3000)
    (folder / "1_Pooling" / "pytorch_model.bin").write_bytes(b"\0" * 500)
    (folder / "tokenizer.json").write_text("{}")
    assert weight_files_size(folder) == 3500
    cache = ModelCache(budget_bytes=10_000)
    worker = Holder("w", {str(folder): 7000})
    cache.admit(worker, str(folder))
    assert cache.used_bytes == 3500
    cache.loaded(worker, str(folder), 7000)
    assert cache.used_bytes == 7000 and cache.estimate(str(folder)) == 7000


def test_the_default_budget_is_half_the_memory_and_a_count_where_it_cannot_be_read() -> None:
    assert default_budget([Gpu("a100", 80), Gpu("a100", 80)]) == 80 * 2**30
    ram = default_budget([])
    assert ram is not None and ram > 0
    assert ModelCache.for_miner(4 * 2**30, None, []).budget_bytes == 4 * 2**30
    assert ModelCache(budget_bytes=None).max_models == DEFAULT_MAX_MODELS
    assert ModelCache(budget_bytes=1).max_models is None


def test_a_workers_held_models_are_read_strictly() -> None:
    assert held_models({"/m/a": 5, "/m/b": -1, "/m/c": True, 7: 1, "/m/d": "9"}) == {"/m/a": 5}
    assert held_models(["/m/a"]) == {} and held_models(None) == {}


def test_a_job_is_billed_from_the_moment_its_model_is_ready() -> None:
    plain = JobTimings()
    assert plain.billed_from == plain.began and plain.report()["model_load_seconds"] is None

    cold = JobTimings(began=datetime.now(UTC) - timedelta(seconds=5))  # it set up and loaded for 5 s
    cold.waits_for_model()
    cold.model_ready(warm=False, load_seconds=1.5)
    cold.end()
    assert cold.model_ready_at is not None and cold.billed_from == cold.model_ready_at
    report = cold.report()
    assert report["model_warm"] is False and report["model_load_seconds"] == 1.5
    assert report["setup_seconds"] >= 3.5
    assert report["run_seconds"] == round((cold.end() - cold.model_ready_at).total_seconds(), 3)

    warm = JobTimings()
    warm.waits_for_model()
    warm.model_ready(warm=True, load_seconds=0.7)
    assert warm.report()["model_load_seconds"] == 0.0 and warm.report()["model_warm"] is True

    never = JobTimings()
    never.waits_for_model()  # its model failed to load: none of its work ran, none is billed
    assert never.billed_from == never.end() and never.report()["run_seconds"] == 0.0


class Weights:
    """A model as the worker's table sees it: any object (a weak reference tells whether it was freed)."""


def test_the_worker_never_unloads_its_running_jobs_model_and_frees_what_it_unloads() -> None:
    lines: list[str] = []
    models = Models(say=lines.append)
    first = models.get("/m/a", "cpu", Weights)
    assert first.warm is False and models.get("/m/a", "cpu", Weights).model is first.model
    assert models.unload(["/m/a"]) == [] and lines == ["kept /m/a: the running job uses it"]
    models.release()
    kept = models.get("/m/b", "cpu", Weights).model  # the test holds on to this one
    models.release()
    del first
    assert sorted(models.unload(["/m/a", "/m/b", "/m/never-loaded"])) == ["/m/a", "/m/b"]
    assert lines[1:] == ["unloaded /m/a (0.0 MiB): freed", "unloaded /m/b (0.0 MiB): still referenced elsewhere"]
    assert models.held() == {} and kept is not None


@needs_ai
def test_a_models_footprint_is_its_tensors_each_counted_once() -> None:
    import torch

    layer = torch.nn.Linear(10, 10)  # 100 weights and 10 biases, float32
    assert footprint(layer) == 110 * 4
    tied = torch.nn.Sequential(layer, torch.nn.Linear(10, 10))
    tied[1].weight = layer.weight  # shared, as tied embeddings are
    assert footprint(tied) == (110 + 10) * 4
    holder = type("Backend", (), {"model": layer.half()})()  # what the generation backend keeps
    assert footprint(holder) == 110 * 2
    assert footprint(object()) == 0


@pytest.mark.parametrize("value", ["lots", "0", "-5GiB"])
def test_a_model_cache_that_is_not_a_size_is_refused_before_the_miner_starts(tmp_path: Path, value: str) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("aitbc_not_used")
    key_file.chmod(0o600)
    arguments = ["miner", "run", "--url", "http://127.0.0.1:9", "--api-key-file", str(key_file)]
    result = CliRunner().invoke(app, [*arguments, "--work-dir", str(tmp_path / "w"), "--model-cache", value])
    assert result.exit_code == 2, result.output
    assert "--model-cache" in result.output and not (tmp_path / "w").exists()


def test_a_load_time_the_worker_overstates_is_capped_by_the_jobs_time_here() -> None:
    timings = JobTimings()
    timings.waits_for_model()
    timings.model_ready(warm=False, load_seconds=10**12)  # a worker whose input broke it may say anything
    report = timings.report()
    assert report["model_load_seconds"] is not None and report["model_load_seconds"] <= 1.0
    assert report["setup_seconds"] == 0.0
