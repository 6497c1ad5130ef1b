"""Real `aitbc miner run` processes: one registers a region, and a job pinned to it with `--agent-id` runs there
while another idle miner keeps polling for work it may take."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stack import Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_pinned_jobs_run_on_their_miner_only_and_miners_register_their_region(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        stack.start_server()
        stack.start_miner("rig-west", "--allow-command", "--region", "US-West")
        stack.start_miner("rig-idle", "--allow-command")

        def both_on_offer() -> dict[str, dict[str, object]] | None:
            offers = stack.json("marketplace", "gpu", "list")["offers"]
            return {offer["name"]: offer for offer in offers} if len(offers) == 2 else None

        offers = wait_until(both_on_offer, 60, interval=0.5, what="both miners to register")
        assert offers["rig-west"]["region"] == "us-west" and offers["rig-idle"]["region"] is None
        west = stack.cli("marketplace", "gpu", "list", "--region", "us-west").stdout
        assert "rig-west" in west and "rig-idle" not in west
        pinned_to = str(offers["rig-west"]["miner_id"])
        jobs = [
            stack.submit("--type", "command", "--input", f"echo pinned {number}", "--agent-id", "rig-west")
            for number in range(3)
        ]
        for job_id in jobs:
            done = stack.wait_status(job_id, {"completed", "failed"}, timeout=60)
            assert done["status"] == "completed", done
            assert done["miner_id"] == pinned_to and done["requirements"]["miner_id"] == pinned_to
        anyone = stack.post_job(type="command", input="echo anyone")
        assert stack.wait_status(anyone, {"completed", "failed"}, timeout=60)["status"] == "completed"
        refused = stack.cli(
            "miner",
            "run",
            "--name",
            "bad",
            "--region",
            "us west",
            "--gpus",
            "none",
            check=False,
            env={"AITBC_API_KEY": stack.miner_key},
        )
        assert refused.returncode == 1 and "--region 'us west'" in refused.stderr
    finally:
        stack.close()
