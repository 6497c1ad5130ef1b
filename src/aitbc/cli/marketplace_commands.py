"""`aitbc marketplace gpu list`, `aitbc marketplace runtimes`, and the quote `aitbc client submit
--use-marketplace` shows before it submits."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from aitbc.cli.common import (
    JsonOption,
    KeyOption,
    UrlOption,
    add_text_row,
    as_text,
    client,
    console,
    errors,
    fail,
    handles_errors,
    print_json,
)
from aitbc.protocol.marketplace import GpuOffer, MarketQuote, RuntimeSchemaOffer
from aitbc.sdk.client import Client

marketplace_app = typer.Typer(
    help="The marketplace: the GPUs live miners offer, and their prices.", no_args_is_help=True
)
gpu_app = typer.Typer(help="GPUs on offer now.", no_args_is_help=True)
marketplace_app.add_typer(gpu_app, name="gpu")

SHOWN_MODELS = 3


def _gpus(offer: GpuOffer) -> str:
    if not offer.gpus:
        return "CPU only"
    return ", ".join(f"{group.count}× {group.model} {group.vram_gb:g} GB" for group in offer.gpus)


def _free(offer: GpuOffer) -> str:
    if offer.gpu_count:
        return f"{offer.gpus_free}/{offer.gpu_count} GPUs"
    return f"{offer.slots - offer.slots_busy}/{offer.slots} slots"


def _models(offer: GpuOffer) -> str:
    shown = ", ".join(offer.models[:SHOWN_MODELS]) or "-"
    more = len(offer.models) - SHOWN_MODELS
    return shown + (f" +{more}" if more > 0 else "")


@gpu_app.command("list")
@handles_errors
def list_gpus(
    model: Annotated[str | None, typer.Option("--model", help="Only miners that serve this model (gpt2).")] = None,
    region: Annotated[str | None, typer.Option("--region", help="Only miners in this region (us-west).")] = None,
    gpu_type: Annotated[
        str | None, typer.Option("--gpu-type", "--gpu", help="Only miners with this GPU model (rtx4090).")
    ] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """The GPUs on offer now: each live miner, its GPUs and how many are free, price per hour, queue."""
    with client(url, api_key) as api:
        found = api.marketplace_gpus(model=model, region=region, gpu_type=gpu_type)
    if as_json:
        print_json(found)
        return
    if not found.offers:
        wanted = " ".join(
            f"{name} {value}" for name, value in (("model", model), ("region", region), ("GPU", gpu_type))
        )
        errors.print(as_text(f"No miner is on offer now{' for ' + wanted if wanted.strip() else ''}.", "yellow"))
        return
    table = Table(title=f"{len(found.offers)} miners on offer")
    for column in ("Miner", "Id", "Region", "GPUs", "Free", "Runtimes", "Models", "AITBC/h", "Queue"):
        table.add_column(column, no_wrap=column in ("Id", "AITBC/h"))
    for offer in found.offers:
        add_text_row(
            table,
            offer.name,
            offer.miner_id,
            offer.region or "-",
            _gpus(offer),
            _free(offer),
            ", ".join(offer.runtimes),
            _models(offer),
            str(offer.price_per_hour),
            f"{offer.queue}" + ("" if found.queue_complete else "+"),
        )
    console.print(table)


def _takes(schema: dict[str, Any] | bool | None) -> str:
    """A schema in a few words: its description, else its type; for an object, the keys it names."""
    if schema is None or schema is True:
        return "anything"
    if schema is False:
        return "nothing inline (an uploaded file)"
    keys = list(schema.get("properties") or {})
    if keys:
        closed = schema.get("additionalProperties") is False
        return ", ".join(keys) + ("" if closed else ", …")
    kinds = schema.get("type")
    return str(schema.get("description") or (" or ".join(kinds) if isinstance(kinds, list) else kinds) or "see --json")


def _declarations(schemas: list[RuntimeSchemaOffer], undeclared: int) -> tuple[str, str]:
    inputs = [_takes(declared.input) for declared in schemas] + (["anything"] if undeclared else [])
    params = [_takes(declared.parameters) for declared in schemas] + (["anything"] if undeclared else [])
    return " | ".join(dict.fromkeys(inputs)) or "anything", " | ".join(dict.fromkeys(params)) or "anything"


@marketplace_app.command("runtimes")
@handles_errors
def list_runtimes(
    name: Annotated[str | None, typer.Argument(help="One runtime: print its schemas in full, as JSON.")] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """The runtimes live miners offer, and what their jobs may hold (the JSON Schemas miners declared)."""
    with client(url, api_key) as api:
        found = api.marketplace_runtimes()
    if name is not None:
        chosen = next((runtime for runtime in found.runtimes if runtime.name == name), None)
        if chosen is None:
            offered = ", ".join(runtime.name for runtime in found.runtimes) or "none"
            fail(f"no live miner offers the runtime {name!r} (on offer: {offered})")
        print_json(chosen)
        return
    if as_json:
        print_json(found)
        return
    if not found.runtimes:
        errors.print(as_text("No miner is on offer now.", "yellow"))
        return
    table = Table(title=f"{len(found.runtimes)} runtimes on offer")
    for column in ("Runtime", "Miners", "Models", "Input", "Params"):
        table.add_column(column)
    for runtime in found.runtimes:
        models = ", ".join(runtime.models[:SHOWN_MODELS]) or "-"
        more = len(runtime.models) - SHOWN_MODELS
        takes, params = _declarations(runtime.schemas, runtime.undeclared)
        add_text_row(
            table, runtime.name, str(runtime.miners), models + (f" +{more}" if more > 0 else ""), takes, params
        )
    console.print(table)


def show_quote(quote: MarketQuote) -> None:
    """The quote on stderr: what `submit` prints on stdout (the job id, or its JSON) stays as it was."""
    best = quote.best
    assert best is not None
    errors.print(
        Text.assemble(
            "Marketplace: ",
            as_text(best.gpu_type, "bold"),
            f" on {best.miners} miner{'s' if best.miners != 1 else ''} ({best.gpus_free} GPU free, queue "
            f"{best.queue}) at {best.price_per_hour} AITBC/h: about {best.estimated_cost} AITBC for "
            f"~{best.estimated_time_seconds} s, holds at most {best.max_cost} AITBC",
        ),
        highlight=False,
    )
    others = [f"{option.gpu_type} {option.price_per_hour}/h" for option in quote.options[1:]]
    if others:
        errors.print(as_text(f"  also on offer: {', '.join(others)}", "dim"), highlight=False)


def choose_gpu(api: Client, yes: bool, **job: Any) -> str:
    """The GPU model `submit --use-marketplace` submits with: the quote's best (the cheapest on offer for this
    job, then the shortest queue), shown first. On a terminal it asks unless --yes; without one it goes on, as
    a plain submit does (what it can cost is capped by the hold shown). Nothing on offer: an error, and nothing
    is submitted."""
    quote = api.quote(**job)
    if quote.best is None:
        fail(
            f"nothing on the marketplace can run this job: {quote.reason}. Nothing was submitted; "
            "`aitbc marketplace gpu list` shows what is on offer"
        )
    show_quote(quote)
    if not yes and sys.stdin.isatty() and not _agreed("Submit at this price? [Y/n] "):
        fail("not submitted", 1)
    return quote.best.gpu_type


def _agreed(question: str) -> bool:
    """Ask on stderr and read the answer from the terminal: stdout carries only the job id (a prompt there would
    end up in `JOB=$(aitbc client submit …)`)."""
    errors.print(question, end="", highlight=False)
    return sys.stdin.readline().strip().lower() in ("", "y", "yes")
