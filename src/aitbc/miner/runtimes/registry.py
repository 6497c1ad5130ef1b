"""Which runtimes a miner offers: the built-in ones, plus plugins other packages register under the entry
point group `aitbc.miner.runtimes` (a callable taking the `MinerConfig` and returning a `Runtime`).

The AI runtimes import their heavy libraries only when built; one that cannot run here (the `ai` extra is
not installed, ffmpeg is missing, no model was given) raises `RuntimeUnavailable`, and is left out unless
it was asked for by name."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points

from aitbc.miner.config import DEFAULT_RUNTIMES, MinerConfig
from aitbc.miner.runtimes.interface import Runtime, RuntimeUnavailable

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "aitbc.miner.runtimes"
Factory = Callable[[MinerConfig], Runtime]


def _command(config: MinerConfig) -> Runtime:
    if not config.allow_command:
        raise RuntimeUnavailable("the command runtime runs other people's code: start the miner with --allow-command")
    from aitbc.miner.runtimes.command import CommandRuntime
    from aitbc.miner.sandboxed_run import Isolation

    return CommandRuntime(Isolation.for_miner(config), config.kill_grace_seconds)


def _embedding(config: MinerConfig) -> Runtime:
    from aitbc.miner.runtimes.embedding import EmbeddingRuntime

    return EmbeddingRuntime.create(config)


def _text_generation(config: MinerConfig) -> Runtime:
    from aitbc.miner.runtimes.text_generation import TextGenerationRuntime

    return TextGenerationRuntime.create(config)


def _reencode(config: MinerConfig) -> Runtime:
    from aitbc.miner.runtimes.reencode import ReencodeRuntime

    return ReencodeRuntime.create(config)


BUILT_IN: dict[str, Factory] = {
    "command": _command,
    "embedding": _embedding,
    "text-generation": _text_generation,
    "reencode": _reencode,
}


def factories() -> dict[str, Factory]:
    found = dict(BUILT_IN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[entry.name] = entry.load()
        except Exception as error:  # a broken plugin must not stop the miner
            log.warning("runtime plugin %s could not be loaded: %s", entry.name, error)
    return found


def build_runtimes(config: MinerConfig) -> tuple[dict[str, Runtime], dict[str, str]]:
    """The runtimes this miner offers, and why each one left out was left out."""
    available = factories()
    wanted = (
        config.runtimes if config.runtimes is not None else (*DEFAULT_RUNTIMES, *sorted(set(available) - set(BUILT_IN)))
    )
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
