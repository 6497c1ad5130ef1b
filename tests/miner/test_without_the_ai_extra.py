"""Without the `[ai]` extra, the AI tests are skipped with a message naming it, and their modules still load.

The extra is installed here, so the check runs pytest in a subprocess whose import system cannot find the
extra's packages (a path finder that answers "no such module" for them, as a base install would), selects the
AI tests (`-m ai`) and reads the report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.miner.ai_extra import AI_MODULES, SKIP_REASON

REPOSITORY = Path(__file__).resolve().parents[2]
AI_TEST_MODULES = (
    "tests/miner/test_ai_runtimes.py",
    "tests/miner/test_ai_worker.py",
    "tests/miner/test_ai_worker_gpus.py",
    "tests/miner/test_serve_miners_e2e.py",
)
# The extra's own packages and the ones it brings that tests import directly.
HIDDEN = (*AI_MODULES, "tokenizers", "safetensors", "huggingface_hub")

WITHOUT_THE_EXTRA = """
import sys
from importlib.machinery import PathFinder

hidden = set(sys.argv[1].split(","))
assert not hidden & set(sys.modules), "imported before they could be hidden"


class WithoutTheAiExtra(PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in hidden:
            return None
        return super().find_spec(fullname, path, target)


sys.meta_path[:] = [WithoutTheAiExtra if finder is PathFinder else finder for finder in sys.meta_path]
try:
    import numpy
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("numpy is still importable")
import pytest

sys.exit(pytest.main(sys.argv[2:]))
"""


def test_without_the_extra_the_ai_tests_are_skipped_naming_it() -> None:
    ran = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_THE_EXTRA,
            ",".join(HIDDEN),
            "-p",
            "pytest_asyncio.plugin",  # the one plugin these modules need; loading every installed one takes seconds
            "-m",
            "ai",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            *AI_TEST_MODULES,
        ],
        cwd=REPOSITORY,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = ran.stdout + ran.stderr
    assert ran.returncode == 0, report
    summary = report.strip().splitlines()[-1]
    assert re.search(r"\d+ skipped", summary), summary
    assert not re.search(r"passed|failed|error", summary), summary  # nothing ran, nothing broke at collection
    skipped = [line for line in report.splitlines() if line.startswith("SKIPPED")]
    for module in AI_TEST_MODULES:
        assert any(module in line and SKIP_REASON in line for line in skipped), (module, report)
    assert all(SKIP_REASON in line for line in skipped), report
