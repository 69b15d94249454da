"""The `frender` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="fRender: a volunteer render farm for Blender.",
    pretty_exceptions_enable=False,
)


@app.callback()
def root() -> None:
    """fRender: friends render, requesters verify, a master keeps the points."""


def fail(message: str) -> None:
    """One clear line on stderr and exit status 1: the contract for bad input."""
    typer.echo(f"frender: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def replay(
    log: Path = typer.Argument(..., help="An event log: master.db or requester.db."),
    job: Optional[int] = typer.Option(None, "--job", help="Only this job's story."),
    as_json: bool = typer.Option(False, "--json", help="Print the audit as JSON."),
) -> None:
    """Verify a log's hash chain, fold it and print its story: jobs, checks, evictions, points."""
    from frender.apps.replay import audit, render_text
    from frender.store import LogError

    try:
        report = audit(log, job=job)
    except LogError as exc:
        fail(str(exc))
    typer.echo(json.dumps(report, indent=2) if as_json else render_text(report))


def main() -> None:
    app(prog_name="frender")


if __name__ == "__main__":
    sys.exit(main())
