"""The harness's fixtures, registered for every test by `tests/conftest.py`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack

# pytest-xdist's workers inherit COLUMNS=80, which Rich would fix as the CLI's width for the whole session: the
# tests see the CLI as a plain pipe sees it, with or without workers.
os.environ.pop("COLUMNS", None)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """`aitbc serve` on SQLite in `tmp_path`, its first-start keys in the stack's CLI profile; no miner yet."""
    made = Stack(tmp_path)
    made.start_server()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def short_lease_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack whose leases last 3 s, for tests that wait for a lost miner's lease to run out."""
    made = Stack(tmp_path, lease_seconds=3)
    made.start_server()
    try:
        yield made
    finally:
        made.close()
