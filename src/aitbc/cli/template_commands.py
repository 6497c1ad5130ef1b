"""`aitbc client template create|list|show|delete`: your named job settings, for `submit --template NAME`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aitbc.cli.apps import client_app
from aitbc.cli.common import (
    JsonOption,
    KeyOption,
    UrlOption,
    add_text_row,
    as_text,
    client,
    confirm,
    console,
    handles_errors,
    print_json,
    short_time,
)
from aitbc.cli.job_inputs import json_object
from aitbc.cli.preset_views import gpu_text, params_text, requirements_option, settings_rows
from aitbc.domain.presets import MAX_TEMPLATES_PER_ACCOUNT

template_app = typer.Typer(
    help=f"Your job templates (at most {MAX_TEMPLATES_PER_ACCOUNT}): settings `submit --template NAME` starts from.",
    no_args_is_help=True,
)
client_app.add_typer(template_app, name="template")

NameOption = Annotated[str, typer.Option("--name", help="The template's name (letters, digits, _ and -).")]


@template_app.command("create")
@handles_errors
def create(
    name: NameOption,
    type: Annotated[
        str | None, typer.Option("--type", help="Job type (runtime): command, embedding, text-generation, reencode.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model to run (e.g. gpt2).")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU model required (v100, a100, rtx3090, …).")] = None,
    gpu_count: Annotated[int | None, typer.Option("--gpu-count", min=1, help="Number of GPUs.")] = None,
    min_vram: Annotated[float | None, typer.Option("--min-vram", help="Minimum VRAM per GPU, in GB.")] = None,
    priority: Annotated[str | None, typer.Option("--priority", help="low, normal, high or urgent.")] = None,
    timeout: Annotated[int | None, typer.Option("--timeout", min=1, help="Job timeout in seconds.")] = None,
    params: Annotated[
        str | None,
        typer.Option("--params", "--workflow-config", help="JSON parameters for the runtime, e.g. '{\"top_p\": 0.9}'."),
    ] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", help="A workflow the template runs: NAME or NAME@VERSION.")
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a template of the same name.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Save job settings under a name. `submit --template NAME` starts from them: the flags it is given win,
    and --workflow-config keys merge over the template's params."""
    parameters = json_object(params, "--params") if params else None
    with client(url, api_key) as api:
        saved = api.create_template(
            name,
            workflow=workflow,
            replace=replace,
            type=type,
            model=model,
            params=parameters,
            requirements=requirements_option(gpu, gpu_count, min_vram) or None,
            priority=priority,
            timeout_seconds=timeout,
        )
    if as_json:
        print_json(saved)
        return
    console.print(as_text(f"Saved template {saved.name}: aitbc client submit --template {saved.name} --input …"))


@template_app.command("list")
@handles_errors
def list_templates(url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """List your templates."""
    with client(url, api_key) as api:
        templates = api.list_templates()
    if as_json:
        print_json(templates)
        return
    table = Table(title=f"{len(templates)} templates")
    for column in ("Name", "Type", "Model", "Priority", "Timeout", "GPU", "Workflow", "Params", "Updated"):
        table.add_column(column)
    for template in templates:
        add_text_row(
            table,
            template.name,
            template.type or "-",
            template.model or "-",
            template.priority.value if template.priority else "-",
            f"{template.timeout_seconds} s" if template.timeout_seconds else "-",
            gpu_text(template),
            template.workflow or "-",
            params_text(template.params),
            short_time(template.updated_at.isoformat().replace("+00:00", "Z")),
        )
    console.print(table)


@template_app.command("show")
@handles_errors
def show(name: NameOption, url: UrlOption = None, api_key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Show one template's settings."""
    with client(url, api_key) as api:
        template = api.get_template(name)
    if as_json:
        print_json(template)
        return
    table = Table(title=f"Template {template.name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in [*settings_rows(template), ("Workflow", template.workflow or "-")]:
        add_text_row(table, label, value)
    add_text_row(table, "Updated", short_time(template.updated_at.isoformat().replace("+00:00", "Z")))
    console.print(table)


@template_app.command("delete")
@handles_errors
def delete(
    name: NameOption,
    force: Annotated[bool, typer.Option("--force", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a template (jobs submitted with it keep their settings)."""
    confirm(force, "delete", f"Delete template {name}?", "nothing was deleted")
    with client(url, api_key) as api:
        deleted = api.delete_template(name)
    if as_json:
        print_json(deleted)
    else:
        console.print(as_text(f"Deleted template {deleted.name}."))
