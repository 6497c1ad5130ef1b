"""Importing a part of aitbc loads only what that part needs: the domain does not pull in the SDK's HTTP,
WebSocket and validation libraries through `aitbc/__init__.py`, while `aitbc.Client` still works."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("httpx", "websockets", "pydantic")


def loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return answer.stdout.split()


def test_the_domain_loads_no_sdk_libraries() -> None:
    assert loaded_after("import aitbc.domain.job") == []


def test_aitbc_client_loads_the_sdk_when_asked_for() -> None:
    assert loaded_after("from aitbc import AsyncClient, Client") == list(HEAVY)
