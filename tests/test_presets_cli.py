"""Templates and workflows from the command line, as the submission guide writes them, against a real coordinator
on a socket (uvicorn in a thread): `aitbc client template …`, `aitbc admin workflows …` (through the API with an
admin key, and on the database directly), `aitbc client workflows list` and `aitbc client submit --template /
--workflow`; and the same calls from `AsyncClient`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from aitbc.cli.main import app
from aitbc.domain.errors import Conflict, Forbidden, NotFound
from aitbc.sdk.client import AsyncClient
from aitbc.settings import Settings
from aitbc.wiring import coordinator_session
from tests.support.served import served_in_thread


@dataclass
class Served:
    url: str
    data_dir: Path
    admin_key: str
    client_key: str
    http: httpx.Client  # with the client's key

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.http.get(f"/v1/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """A coordinator in a thread; the CLI's environment points at it with the client key (and the admin key
    where admin commands look for one)."""
    settings = Settings(data_dir=tmp_path / "data", run_reaper=False, run_results_sweeper=False)

    async def bootstrap() -> tuple[str, str]:
        async with coordinator_session(settings) as coordinator:
            admin, user = await coordinator.accounts.bootstrap()
        return admin.secret, user.secret

    admin_key, client_key = asyncio.run(bootstrap())
    with served_in_thread(settings) as url:
        monkeypatch.setenv("AITBC_URL", url)
        monkeypatch.setenv("AITBC_API_KEY", client_key)
        monkeypatch.setenv("AITBC_ADMIN_API_KEY", admin_key)
        monkeypatch.setenv("AITBC_CONFIG", str(tmp_path / "profile.json"))
        monkeypatch.setenv("COLUMNS", "250")
        monkeypatch.chdir(tmp_path)
        with httpx.Client(base_url=url, headers={"X-Api-Key": client_key}, timeout=30) as http:
            yield Served(url, settings.data_dir, admin_key, client_key, http)


def aitbc(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def submitted(*args: str) -> str:
    code, out, err = aitbc("client", "submit", *args)
    assert code == 0, out + err
    return out.strip()


def test_the_guides_job_template(served: Served) -> None:
    code, out, err = aitbc(
        "client",
        "template",
        "create",
        "--name",
        "inference_template",
        "--model",
        "gpt2",
        "--priority",
        "normal",
        "--timeout",
        "3600",
    )
    assert code == 0, out + err
    assert "inference_template" in out
    job_id = submitted("--template", "inference_template", "--input", "Hello world")
    job = served.job(job_id)
    assert (job["model"], job["type"], job["priority"], job["timeout_seconds"]) == (
        "gpt2",
        "text-generation",
        "normal",
        3600,
    )
    assert job["template"] == "inference_template"

    code, out, _ = aitbc("client", "get", "--job-id", job_id)
    assert code == 0 and "template inference_template" in out
    code, out, _ = aitbc("client", "template", "list")
    assert code == 0 and "inference_template" in out and "gpt2" in out and "3600 s" in out
    code, out, _ = aitbc("client", "template", "show", "--name", "inference_template", "--json")
    assert code == 0 and json.loads(out)["model"] == "gpt2"
    code, out, _ = aitbc("client", "template", "show", "--name", "inference_template")
    assert code == 0 and "Template inference_template" in out


def test_the_flags_given_win_over_the_template_and_only_they_are_sent(served: Served) -> None:
    code, out, err = aitbc(
        "client",
        "template",
        "create",
        "--name",
        "heavy",
        "--type",
        "command",
        "--gpu",
        "a100",
        "--gpu-count",
        "2",
        "--priority",
        "high",
        "--timeout",
        "120",
        "--params",
        '{"temperature": 0.2, "top_p": 0.9}',
    )
    assert code == 0, out + err
    job = served.job(
        submitted(
            "--template",
            "heavy",
            "--input",
            "echo hi",
            "--priority",
            "low",
            "--workflow-config",
            '{"temperature": 0.7}',
        )
    )
    assert (job["priority"], job["timeout_seconds"]) == ("low", 120)
    assert job["requirements"] == {"gpu_type": "a100", "gpu_count": 2, "min_vram_gb": None, "miner_id": None}
    assert job["params"] == {"temperature": 0.7, "top_p": 0.9}
    # With neither a template nor a workflow the coordinator's defaults still apply.
    plain = served.job(submitted("--type", "command", "--input", "echo hi"))
    assert (plain["priority"], plain["timeout_seconds"], plain["requirements"]["gpu_count"]) == ("normal", 3600, 1)
    assert plain["template"] is None and plain["workflow"] is None

    code, _, err = aitbc("client", "template", "create", "--name", "heavy", "--type", "embedding")
    assert code == 1 and "already exists" in err
    code, out, err = aitbc(
        "client", "template", "create", "--name", "heavy", "--type", "embedding", "--replace", "--json"
    )
    assert code == 0 and json.loads(out)["type"] == "embedding", err
    code, _, err = aitbc("client", "template", "delete", "--name", "heavy")
    assert code == 2 and "--force" in err  # no terminal to ask on
    code, out, err = aitbc("client", "template", "delete", "--name", "heavy", "--force")
    assert code == 0 and "Deleted template heavy" in out, err
    code, out, _ = aitbc("client", "template", "list", "--json")
    assert code == 0 and json.loads(out) == []


def test_template_errors_say_what_to_do(served: Served) -> None:
    code, _, err = aitbc("client", "submit", "--template", "nope", "--input", "x")
    assert code == 1 and "template 'nope' not found" in err and "template create" in err
    code, _, err = aitbc("client", "template", "create", "--name", "bad name", "--type", "command")
    assert code == 1 and "name" in err
    code, _, err = aitbc("client", "template", "create", "--name", "ok", "--params", "[1, 2]")
    assert code == 1 and "--params must be a JSON object" in err
    code, _, err = aitbc("client", "template", "create", "--name", "empty")
    assert code == 1 and "at least one setting" in err
    code, _, err = aitbc("client", "template", "show", "--name", "nope")
    assert code == 1 and "not found" in err
    assert served.http.get("/v1/templates").json() == []


def test_the_guides_workflows(served: Served, tmp_path: Path) -> None:
    code, out, err = aitbc(
        "admin",
        "workflows",
        "create",
        "--name",
        "ai_inference",
        "--type",
        "text-generation",
        "--model",
        "gpt2",
        "--params",
        '{"temperature": 0.5}',
        "--allow-keys",
        "temperature, max_tokens",
        "--description",
        "Text generation with gpt2",
    )
    assert code == 0, out + err
    assert "ai_inference@1" in out
    # The same, on the database directly (no server needed; the running one sees it at once).
    code, out, err = aitbc(
        "admin",
        "workflows",
        "create",
        "--name",
        "custom_workflow",
        "--type",
        "command",
        "--data-dir",
        str(served.data_dir),
    )
    assert code == 0 and "custom_workflow@1" in out, out + err

    job = served.job(submitted("--workflow", "ai_inference", "--input", '{"prompt": "Hello world"}'))
    assert (job["type"], job["model"], job["workflow"]) == ("text-generation", "gpt2", "ai_inference@1")
    assert job["params"] == {"temperature": 0.5}
    job = served.job(
        submitted(
            "--workflow",
            "ai_inference",
            "--input",
            "x",
            "--workflow-config",
            '{"temperature": 0.8, "max_tokens": 1000}',
        )
    )
    assert job["params"] == {"temperature": 0.8, "max_tokens": 1000}
    (tmp_path / "data.txt").write_text("some input\n")
    job = served.job(
        submitted(
            "--workflow",
            "custom_workflow",
            "--input",
            "data.txt",
            "--workflow-config",
            '{"temperature": 0.7, "top_p": 0.9}',
        )
    )
    assert (job["type"], job["workflow"], job["params"]) == (
        "command",
        "custom_workflow@1",
        {"temperature": 0.7, "top_p": 0.9},
    )

    code, out, _ = aitbc("client", "workflows", "list")
    assert (
        code == 0 and "ai_inference" in out and "temperature, max_tokens" in out and "Text generation with gpt2" in out
    )
    assert "custom_workflow" in out and "any" in out
    code, out, _ = aitbc("client", "workflows", "list", "--json")
    assert {each["workflow"] for each in json.loads(out)} == {"ai_inference@1", "custom_workflow@1"}
    code, out, _ = aitbc("admin", "workflows", "list", "--data-dir", str(served.data_dir), "--json")
    assert code == 0 and len(json.loads(out)) == 2


def test_workflow_errors(served: Served) -> None:
    code, _, err = aitbc("client", "submit", "--workflow", "ai_inference", "--input", "x")
    assert code == 1 and "no workflow is defined" in err and "aitbc admin workflows create" in err
    create = ["admin", "workflows", "create", "--name", "ai_inference", "--type", "text-generation"]
    code, _, err = aitbc(*create, "--api-key", served.client_key)
    assert code == 1 and "admin key" in err
    code, _, err = aitbc(*create, "--allow-keys", "temperature")
    assert code == 0, err
    code, _, err = aitbc(*create, "--version", "1")
    assert code == 1 and "already exists" in err
    code, _, err = aitbc("client", "submit", "--workflow", "ai_inference", "--workflow-config", '{"seed": 1}')
    assert code == 1 and "does not take the parameter seed" in err
    code, _, err = aitbc("client", "submit", "--workflow", "ai_inference@9", "--input", "x")
    assert code == 1 and "no version 9" in err
    code, _, err = aitbc(*create, "--name", "bad name", "--data-dir", str(served.data_dir))
    assert code == 1 and "invalid workflow: name" in err
    assert served.http.get("/v1/jobs").json()["jobs"] == []


def test_a_jobs_file_names_templates_and_workflows(served: Served, tmp_path: Path) -> None:
    assert aitbc("client", "template", "create", "--name", "t", "--model", "gpt2", "--priority", "high")[0] == 0
    assert aitbc("admin", "workflows", "create", "--name", "w", "--type", "command")[0] == 0
    jobs_file = tmp_path / "jobs.json"
    jobs_file.write_text(json.dumps([{"template": "t", "input": "a"}, {"workflow": "w", "input": "echo b"}]))
    code, out, err = aitbc("client", "batch-submit", "--jobs-file", str(jobs_file), "--json")
    assert code == 0, out + err
    made = [result["job"] for result in json.loads(out)["jobs"]]
    assert [(job["model"], job["priority"], job["template"], job["workflow"]) for job in made] == [
        ("gpt2", "high", "t", None),
        (None, "normal", None, "w@1"),
    ]


async def test_the_async_client_manages_presets(served: Served) -> None:
    async with AsyncClient(served.url, served.admin_key) as admin, AsyncClient(served.url, served.client_key) as user:
        made = await admin.create_workflow("summarize", "text-generation", model="gpt2", allowed_keys=["max_tokens"])
        assert made.workflow == "summarize@1" and made.latest
        with pytest.raises(Forbidden):
            await user.create_workflow("mine", "command")
        assert [each.workflow for each in await user.list_workflows()] == ["summarize@1"]
        saved = await user.create_template("short", workflow="summarize", params={"max_tokens": 50}, priority="low")
        assert saved.workflow == "summarize" and saved.priority is not None and saved.priority.value == "low"
        with pytest.raises(Conflict):
            await user.create_template("short", type="command")
        assert [each.name for each in await user.list_templates()] == ["short"]
        job = await user.submit(template="short", input="a long text")
        assert (job.model, job.workflow, job.template, job.params) == (
            "gpt2",
            "summarize@1",
            "short",
            {"max_tokens": 50},
        )
        assert (await user.get_template("short")).params == {"max_tokens": 50}
        assert (await user.delete_template("short")).name == "short"
        with pytest.raises(NotFound):
            await user.get_template("short")
