"""`make run` sets up what its local miners need to run the AI jobs the README shows: the `ai` extra, with
torch's CPU build installed first, as `make test` does. Read from what make would run (`make -n`, nothing
executed) for a fresh virtual environment; `aitbc serve --miners N` running an embedding job on those
runtimes is tests/miner/test_serve_miners_e2e.py's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(target: str, tmp_path: Path, *variables: str) -> list[str]:
    """The commands `make TARGET` would run on a fresh checkout's first run."""
    answer = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}", f"DATA_DIR={tmp_path / 'data'}", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return answer.stdout.splitlines()


def position(commands: list[str], *words: str) -> int:
    return next(index for index, command in enumerate(commands) if all(word in command for word in words))


def test_make_run_installs_the_ai_extra_with_cpu_torch_before_serving(tmp_path: Path) -> None:
    commands = planned("run", tmp_path)
    torch = position(commands, "pip install", "'torch==2.13.0'")
    extra = position(commands, "pip install", "-e '.[ai]'")
    serve = position(commands, "aitbc serve", "--miners 2", "--allow-command")
    assert torch < extra < serve

    test_commands = planned("pytest", tmp_path)
    assert position(test_commands, "pip install", "'torch==2.13.0'") < position(test_commands, "'.[test,ai]'")


def test_a_torch_index_can_be_named(tmp_path: Path) -> None:
    commands = planned("run", tmp_path, "TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert (
        "--extra-index-url https://download.pytorch.org/whl/cpu 'torch==2.13.0'"
        in commands[position(commands, "pip install", "torch")]
    )
