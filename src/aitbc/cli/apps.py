"""The Typer apps that commands in several modules register on, and their shared options; defined here, apart
from every command, so that the command modules import this and never each other."""

from __future__ import annotations

from typing import Annotated

import typer

client_app = typer.Typer(help="Submit jobs and follow, cancel and list them.", no_args_is_help=True)

JobIdOption = Annotated[str, typer.Option("--job-id", help="The job's id (job_…).")]
