"""Which runtimes a miner offers: the built-in ones, plus plugins other packages register under the entry
point group `aitbc.miner.runtimes` (a callable taking the `MinerConfig` and returning a `Runtime`).

The AI runtimes import their heavy libraries only when built; one that cannot run here (the `ai` extra is
not installed, ffmpeg is missing, no model was given) raises `RuntimeUnavailable`, and is left out unless
it was asked for by name."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from aitbc.miner.config import DEFAULT_RUNTIMES, MinerConfig
from aitbc.miner.runtimes.interface import Runtime, RuntimeUnavailable

if TYPE_CHECKING:
    from aitbc.miner.sandboxed_run import Isolation

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "aitbc.miner.runtimes"
Factory = Callable[[MinerConfig], Runtime]
SandboxedFactory = Callable[[MinerConfig, Callable[[], "Isolation"]], Runtime]


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


def _embedding(config: MinerConfig) -> Runtime:
    from aitbc.miner.runtimes.embedding import EmbeddingRuntime

    return EmbeddingRuntime.create(config)


def _text_generation(config: MinerConfig) -> Runtime:
    from aitbc.miner.runtimes.text_generation import TextGenerationRuntime

    return TextGenerationRuntime.create(config)


def _reencode(config: MinerConfig, isolation: Callable[[], Isolation]) -> Runtime:
    from aitbc.miner.runtimes.reencode import ReencodeRuntime

    ReencodeRuntime.tools()  # no ffmpeg: say so before checking the sandbox
    return ReencodeRuntime.create(config, isolation())


SANDBOXED: dict[str, SandboxedFactory] = {"command": _command, "reencode": _reencode}
BUILT_IN: dict[str, Factory] = {"embedding": _embedding, "text-generation": _text_generation}


def _given(make: SandboxedFactory, isolation: Callable[[], Isolation]) -> Factory:
    return lambda config: make(config, isolation)


def factories(isolation: Callable[[], Isolation]) -> dict[str, Factory]:
    """Every runtime by name; the sandboxed built-ins get the miner's one `isolation`."""
    found: dict[str, Factory] = {
        **{name: _given(make, isolation) for name, make in SANDBOXED.items()},
        **BUILT_IN,
    }
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[entry.name] = entry.load()
        except Exception as error:  # a broken plugin must not stop the miner
            log.warning("runtime plugin %s could not be loaded: %s", entry.name, error)
    return found


def build_runtimes(config: MinerConfig) -> tuple[dict[str, Runtime], dict[str, str]]:
    """The runtimes this miner offers, and why each one left out was left out."""
    available = factories(SharedIsolation(config))
    built_in = {*SANDBOXED, *BUILT_IN}
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
