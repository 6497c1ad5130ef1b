"""`aitbc admin workflows create|list` (admins define the catalogue) and `aitbc client workflows list` (every
client reads it): named, versioned job presets for `submit --workflow NAME[@VERSION]`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from aitbc.cli.admin_access import DatabaseOption, DataDirOption, run_as_admin
from aitbc.cli.apps import client_app
from aitbc.cli.common import (
    JsonOption,
    KeyOption,
    UrlOption,
    add_text_row,
    as_text,
    client,
    console,
    handles_errors,
    print_json,
)
from aitbc.cli.job_inputs import json_object
from aitbc.cli.preset_views import gpu_text, params_text, requirements_option
from aitbc.protocol.presets import CreateWorkflowRequest, WorkflowView

if TYPE_CHECKING:  # the server side loads only when a command works on the database directly
    from aitbc.wiring import Coordinator

admin_workflows_app = typer.Typer(
    help="Define workflows: named, versioned job presets clients submit with `--workflow NAME`.",
    no_args_is_help=True,
)
client_workflows_app = typer.Typer(
    help="The workflows you can submit with `aitbc client submit --workflow NAME[@VERSION]`.", no_args_is_help=True
)
client_app.add_typer(client_workflows_app, name="workflows")


def _request(body: dict[str, Any]) -> CreateWorkflowRequest:
    """The request the flags make, checked here as the API would check it (for the direct-on-database mode)."""
    try:
        return CreateWorkflowRequest.model_validate(body)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()[:5]
        )
        raise ValueError(f"invalid workflow: {problems}") from None


@admin_workflows_app.command("create")
@handles_errors
def create(
    name: Annotated[str, typer.Option("--name", help="The workflow's name (letters, digits, _ and -).")],
    type: Annotated[
        str, typer.Option("--type", help="Job type (runtime): command, embedding, text-generation, reencode.")
    ],
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="The version to create (default: one past the newest; 1 if new)."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model to run (e.g. gpt2).")] = None,
    params: Annotated[
        str | None,
        typer.Option("--params", help="JSON parameters the workflow presets, e.g. '{\"temperature\": 0.7}'."),
    ] = None,
    allow_keys: Annotated[
        str | None,
        typer.Option(
            "--allow-keys",
            help="Comma-separated parameter keys users may set with --workflow-config (default: any; '' for none).",
        ),
    ] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU model required (v100, a100, rtx3090, …).")] = None,
    gpu_count: Annotated[int | None, typer.Option("--gpu-count", min=1, help="Number of GPUs.")] = None,
    min_vram: Annotated[float | None, typer.Option("--min-vram", help="Minimum VRAM per GPU, in GB.")] = None,
    priority: Annotated[
        str | None, typer.Option("--priority", help="Default priority: low, normal, high, urgent.")
    ] = None,
    timeout: Annotated[int | None, typer.Option("--timeout", min=1, help="Default job timeout in seconds.")] = None,
    description: Annotated[str, typer.Option("--description", help="What the workflow does, for the catalogue.")] = "",
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a workflow version; versions never change once created, and the newest is what NAME means."""
    keys = [key.strip() for key in allow_keys.split(",") if key.strip()] if allow_keys is not None else None
    body: dict[str, Any] = {
        "name": name,
        "version": version,
        "type": type,
        "model": model,
        "params": json_object(params, "--params") if params else {},
        "requirements": requirements_option(gpu, gpu_count, min_vram),
        "priority": priority,
        "timeout_seconds": timeout,
        "allowed_keys": keys,
        "description": description,
    }
    request = _request(body)

    async def work(coordinator: Coordinator) -> WorkflowView:
        return await coordinator.workflows.create(request)

    created = run_as_admin(
        data_dir,
        database_url,
        url,
        api_key,
        work,
        lambda api: api.create_workflow(
            name,
            type,
            version=version,
            allowed_keys=keys,
            description=description,
            model=model,
            params=request.params,
            requirements=request.requirements,
            priority=priority,
            timeout_seconds=timeout,
        ),
    )
    if as_json:
        print_json(created)
        return
    console.print(
        as_text(
            f"Created workflow {created.workflow}: aitbc client submit --workflow {created.name} --input …"
            + ("" if created.latest else f" (a newer version exists; this one is --workflow {created.workflow})")
        )
    )


@admin_workflows_app.command("list")
@handles_errors
def admin_list(
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List every version of every workflow."""

    async def work(coordinator: Coordinator) -> list[WorkflowView]:
        return await coordinator.workflows.list()

    show(run_as_admin(data_dir, database_url, url, api_key, work, lambda api: api.list_workflows()), as_json, True)


@client_workflows_app.command("list")
@handles_errors
def client_list(
    versions: Annotated[bool, typer.Option("--versions", help="A row for every version, not only the newest.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the workflows you can submit to: name, versions, type, model, description and the parameter keys
    --workflow-config may set."""
    with client(url, api_key) as api:
        found = api.list_workflows()
    show(found, as_json, versions)


def show(workflows: list[WorkflowView], as_json: bool, every_version: bool) -> None:
    """The catalogue: with `every_version`, a row per version; else a row per workflow (its newest version)."""
    if as_json:
        print_json(workflows)
        return
    versions: dict[str, list[str]] = {}
    for workflow in workflows:
        versions.setdefault(workflow.name, []).append(str(workflow.version))
    rows = workflows if every_version else [workflow for workflow in workflows if workflow.latest]
    table = Table(title=f"{len(versions)} workflows")
    for column in ("Workflow", "Version" if every_version else "Versions (newest first)", "Type", "Model", "GPU"):
        table.add_column(column)
    for column in ("Params", "Keys you may set", "Description"):
        table.add_column(column)
    for workflow in rows:
        allowed = workflow.allowed_keys
        add_text_row(
            table,
            workflow.name,
            workflow.workflow if every_version else ", ".join(versions[workflow.name]),
            workflow.type or "-",
            workflow.model or "-",
            gpu_text(workflow),
            params_text(workflow.params),
            "any" if allowed is None else ", ".join(allowed) or "none",
            workflow.description or "-",
        )
    console.print(table)
