"""A volunteer's commands for the friend running in a home: `frender friend pause|resume|status`.

Registered on ``cli.friend_app`` when ``frender.apps.cli`` is imported. They talk to the running friend through files
in its home (``availability``), and ``status`` asks its master how it stands (``standing``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from frender.apps.cli import friend_app
from frender.apps.terminal import DEFAULT_HOME, fail, safe

__all__ = ["friend_pause", "friend_resume", "friend_status"]


@friend_app.command("pause")
def friend_pause(
    home: Path = typer.Option(DEFAULT_HOME / "friend", help="The friend's home."),
    now: bool = typer.Option(False, "--now", help="Stop the frame in hand too, instead of finishing it."),
    wait: float = typer.Option(60.0, help="Seconds to wait for the friend to hand its work back (0: do not wait)."),
) -> None:
    """Pause a friend: it finishes the frame in hand (or stops it, --now), hands the rest back, takes no job."""
    _control(home, "now" if now else "frame", wait, done=lambda line: line == "paused")


@friend_app.command("resume")
def friend_resume(
    home: Path = typer.Option(DEFAULT_HOME / "friend", help="The friend's home."),
    wait: float = typer.Option(10.0, help="Seconds to wait for the friend to see it (0: do not wait)."),
) -> None:
    """Resume a paused friend (it may still be outside its schedule, or wait for the computer to be idle)."""
    _control(home, None, wait, done=lambda line: line != "paused" and not line.startswith("paused;"))


@friend_app.command("status")
def friend_status(home: Path = typer.Option(DEFAULT_HOME / "friend", help="The friend's home.")) -> None:
    """Print what the friend running in --home is doing (available, rendering, paused, outside schedule...) and how it
    stands at its master: probationary or trusted and how far from trusted, points earned, held and fined."""
    from frender.apps.availability import STOPPED, read_pause, read_status
    from frender.apps.standing import standing_report

    line = read_status(home)
    if line is None or line == STOPPED:
        start = "; it will start paused" if read_pause(home) else ""
        typer.echo(f"no friend is running in {home}{start}" if line is None else f"stopped: no friend is running in {home}{start}")
    else:
        typer.echo(safe(line))
    for text in standing_report(home):
        typer.echo(safe(text))


def _control(home: Path, mode: str | None, wait: float, done: Callable[[str], bool]) -> None:
    import time

    from frender.apps.availability import STOPPED, read_status, write_pause

    if not home.is_dir():
        fail(f"{home}: no such friend home")
    write_pause(home, mode)
    verb = "paused" if mode else "resumed"
    if read_status(home) in (None, STOPPED):
        typer.echo(f"{verb}: no friend is running in {home}; it will start {'paused' if mode else 'available'}")
        return
    deadline = time.monotonic() + wait
    line = read_status(home) or ""
    while not done(line) and time.monotonic() < deadline:
        time.sleep(0.2)
        line = read_status(home) or "stopped"
    line = safe(line)
    if done(line) or wait <= 0:
        typer.echo(verb if line == verb else f"{verb}: {line}")  # "paused", not "paused: paused"
    else:
        typer.echo(f"{verb}, but after {wait:g} s the friend says: {line}")
