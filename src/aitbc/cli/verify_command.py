"""`aitbc client verify`: check a job's results end to end, offline if need be, against the coordinator key
pinned in the CLI profile on first use. The checks are the SDK's (`sdk/verification.py`, `sdk/pinning.py`);
this prints them, and warns loudly when the coordinator's key has changed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aitbc.cli.apps import JobIdOption, client_app
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
from aitbc.sdk.config import read_profile
from aitbc.sdk.pinning import KeyChange, pinned_key
from aitbc.sdk.verification import Verification, find_receipt, verify_offline


def _warn(change: KeyChange) -> None:
    errors.print(
        Panel(
            f"The coordinator at {change.url} now presents key {change.served_key_id},\n"
            f"but key {change.pinned_key_id} was pinned on {change.pinned_at}.\n"
            "Someone may be impersonating it, or its key was replaced.\n"
            + (
                "Trusting the new key as asked (--trust-new-key)."
                if change.trusted
                else "Receipts are checked against the pinned key. If the change is expected, run again with "
                "--trust-new-key."
            ),
            title="[bold red]WARNING: THE COORDINATOR'S KEY HAS CHANGED",
            border_style="bold red",
        )
    )


@client_app.command()
@handles_errors
def verify(
    job_id: JobIdOption,
    path: Annotated[
        Path | None, typer.Option("--path", help="A downloaded copy: the <job_id> folder, its parent, or the zip.")
    ] = None,
    receipt_path: Annotated[
        Path | None, typer.Option("--receipt", help="A saved receipt (default: <job_id>.receipt.json beside --path).")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Use only the pinned key and local files.")] = False,
    trust_new_key: Annotated[
        bool, typer.Option("--trust-new-key", help="Accept and pin a coordinator key that changed.")
    ] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check a job's results end to end; exit 0 only if the receipt, both signatures and every file hold.

    The coordinator's key is pinned in the CLI profile on first use (a later change is a loud warning and a
    failure); files are those of --path (the <job_id> folder, its parent or the zip), else streamed from the
    coordinator.
    """
    location = path.expanduser() if path else None
    receipt = find_receipt(job_id, location, receipt_path)
    if offline:
        if receipt is None or location is None:
            fail("--offline needs --path and a saved receipt (`aitbc client download` saves one)")
        public_key = pinned_key(url or os.environ.get("AITBC_URL") or read_profile().get("url"))
        if public_key is None:
            fail(
                "--offline needs a coordinator key pinned in the profile (run verify online once), "
                "and --url if several are"
            )
        verification = verify_offline(job_id, location, receipt, public_key)
    else:
        with client(url, api_key) as api:
            verification = api.verify(job_id, path=location, receipt=receipt, trust_new_key=trust_new_key)
    if verification.key_change is not None:
        _warn(verification.key_change)
    _report(verification, as_json)


def _report(verification: Verification, as_json: bool) -> None:
    checks, job_id, failed = verification.checks, verification.job_id, verification.failed
    if as_json:
        print_json(
            {
                "job_id": job_id,
                "ok": not failed,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
            }
        )
    else:
        table = Table(show_header=False, box=None, pad_edge=False)
        for check in checks:
            mark = as_text("✓", "green") if check.ok else as_text("✗", "bold red")
            add_text_row(table, mark, check.name, check.detail)
        console.print(table)
        if failed:
            errors.print(
                Text.assemble(
                    as_text("Verification FAILED:", "bold red"),
                    " ",
                    "; ".join(f"{c.name} ({c.detail})" for c in failed),
                ),
                highlight=False,
            )
        else:
            console.print(
                Text.assemble(
                    as_text("Verified:", "bold green"), f" {job_id} — receipt, both signatures and every file hold."
                )
            )
    if failed:
        raise typer.Exit(1)
