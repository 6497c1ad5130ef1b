"""Which runtimes a miner offers: the built-in ones, plus plugins other packages register under the entry
point group `aitbc.miner.runtimes` (a callable taking the `MinerConfig` and returning a `Runtime`).

The AI runtimes import their heavy libraries only when built; one that cannot run here (the `ai` extra is
not installed, ffmpeg is missing, no model was given) raises `RuntimeUnavailable`, and is left out unless
it was asked for by name. They share the miner's one model cache: one memory budget for every loaded model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from aitbc.miner.config import DEFAULT_RUNTIMES, MinerConfig
from aitbc.miner.runtimes.interface import Runtime, RuntimeUnavailable
from aitbc.miner.worker.model_cache import ModelCache

if TYPE_CHECKING:
    from aitbc.miner.sandboxed_run import Isolation

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "aitbc.miner.runtimes"
Factory = Callable[[MinerConfig], Runtime]
SandboxedFactory = Callable[[MinerConfig, Callable[[], "Isolation"]], Runtime]
ModelFactory = Callable[[MinerConfig, ModelCache], Runtime]


class SharedIsolation:
    """The miner's one `Isolation`, made the first time a runtime that sandboxes needs it: `command` and
    `reencode` share its scratch folders, cgroups and limits (and the sandbox is checked once)."""

    def __init__(self, config: MinerConfig) -> None:
        self._config = config
        self._made: Isolation | None = None

    def __call__(self) -> Isolation:
        if self._made is None:
            from aitbc.miner.sandboxed_run import Isolation

            self._made = Isolation.for_miner(self._config)
        return self._made


def _command(config: MinerConfig, isolation: Callable[[], Isolation]) -> Runtime:
    if not config.allow_command:
        raise RuntimeUnavailable("the command runtime runs other people's code: start the miner with --allow-command")
    from aitbc.miner.runtimes.command import CommandRuntime

    return CommandRuntime(isolation(), config.kill_grace_seconds)


def _embedding(config: MinerConfig, cache: ModelCache) -> Runtime:
    from aitbc.miner.runtimes.embedding import EmbeddingRuntime

    return EmbeddingRuntime.create(config, cache)


def _text_generation(config: MinerConfig, cache: ModelCache) -> Runtime:
    from aitbc.miner.runtimes.text_generation import TextGenerationRuntime

    return TextGenerationRuntime.create(config, cache)


def _reencode(config: MinerConfig, isolation: Callable[[], Isolation]) -> Runtime:
    from aitbc.miner.runtimes.reencode import ReencodeRuntime

    ReencodeRuntime.tools()  # no ffmpeg: say so before checking the sandbox
    return ReencodeRuntime.create(config, isolation())


SANDBOXED: dict[str, SandboxedFactory] = {"command": _command, "reencode": _reencode}
WITH_MODELS: dict[str, ModelFactory] = {"embedding": _embedding, "text-generation": _text_generation}


def _given(make: SandboxedFactory, isolation: Callable[[], Isolation]) -> Factory:
    return lambda config: make(config, isolation)


def _sharing(make: ModelFactory, cache: ModelCache) -> Factory:
    return lambda config: make(config, cache)


def factories(isolation: Callable[[], Isolation], cache: ModelCache) -> dict[str, Factory]:
    """Every runtime by name; the sandboxed built-ins get the miner's one `isolation`, those with models its
    one model `cache`."""
    found: dict[str, Factory] = {
        **{name: _given(make, isolation) for name, make in SANDBOXED.items()},
        **{name: _sharing(make, cache) for name, make in WITH_MODELS.items()},
    }
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[entry.name] = entry.load()
        except Exception as error:  # a broken plugin must not stop the miner
            log.warning("runtime plugin %s could not be loaded: %s", entry.name, error)
    return found


def build_runtimes(config: MinerConfig) -> tuple[dict[str, Runtime], dict[str, str]]:
    """The runtimes this miner offers, and why each one left out was left out."""
    cache = ModelCache.for_miner(config.model_cache_bytes, config.max_models, config.gpus)
    available = factories(SharedIsolation(config), cache)
    built_in = {*SANDBOXED, *WITH_MODELS}
    wanted = config.runtimes if config.runtimes is not None else (*DEFAULT_RUNTIMES, *sorted(set(available) - built_in))
    built: dict[str, Runtime] = {}
    missing: dict[str, str] = {}
    for name in wanted:
        factory = available.get(name)
        if factory is None:
            missing[name] = f"no runtime named '{name}' (known: {', '.join(sorted(available))})"
            continue
        try:
            built[name] = factory(config)
        except RuntimeUnavailable as error:
            missing[name] = str(error)
        except ImportError as error:
            missing[name] = f"needs the AI extra (pip install 'aitbc[ai]'): {error}"
    return built, missing
