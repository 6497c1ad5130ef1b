"""`aitbc serve` caps glibc's malloc arenas (api/memory.py), unless the operator set MALLOC_ARENA_MAX."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = "from aitbc.api.memory import limit_malloc_arenas; print(limit_malloc_arenas())"


def run_probe(environment: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_cap_is_set_on_glibc() -> None:
    environment = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    assert run_probe(environment) == "True"


def test_an_operators_own_setting_wins() -> None:
    assert run_probe({**os.environ, "MALLOC_ARENA_MAX": "4"}) == "False"
