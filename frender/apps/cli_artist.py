"""The artist's commands after a submit: `frender fetch`, `frender cancel`, `frender video`, and what Ctrl-C of submit says.

Registered on ``cli.app`` when ``frender.apps.cli`` is imported. Every hint
printed here is a whole command (``out_folder.fetch_command``) that finds the
same job again by its number.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional

import typer

from frender.apps.cli import _address, _leaves, app
from frender.apps.terminal import DEFAULT_HOME, call_or_fail, fail

if TYPE_CHECKING:
    from frender.apps.client import SubmitResult

__all__ = ["cancel", "fetch", "interrupted", "link", "points", "say_ended", "video", "write_video"]


def points(n: int) -> str:
    """"1 point", "2 points"."""
    return f"{n} point" if n == 1 else f"{n} points"


def interrupted(out: Path, requester: str, home: Path) -> NoReturn:
    """What Ctrl-C of `submit` leaves: the job goes on at the requester; `frender fetch` resumes that very job."""
    from frender.apps.out_folder import cancel_command, fetch_command, read_state

    saved = read_state(out)
    if saved is None:
        typer.echo("\nstopped before the job was submitted; nothing runs", err=True)
        raise typer.Exit(130)
    job, at = saved["job"], str(saved.get("requester") or requester)
    typer.echo(
        f"\nstopped following job {job}; it goes on at the requester, which keeps its final frames.\n"
        f"resume (only missing frames are fetched): {fetch_command(job, at, out, home)}\n"
        f"or stop it: {cancel_command(job, at, home)}",
        err=True,
    )
    raise typer.Exit(130)


@app.command()
def fetch(
    job: int = typer.Argument(..., help="The job number (what submit printed; `frender jobs` lists them)."),
    requester: Optional[str] = typer.Option(None, help="The requester's address (default: the one OUT's job file names)."),
    out: Path = typer.Option(..., help="Where the frames go; frames already there are kept."),
    home: Path = typer.Option(DEFAULT_HOME / "client", help="Your key: the one that submitted the job."),
    video: Optional[Path] = typer.Option(None, help="Also assemble the final frames into this H.264 video (.mp4)."),
) -> None:
    """Find a job again by its number: follow it and write its final frames into --out, waiting for the rest while it runs."""
    import trio

    from frender.apps.client import SubmitRefused
    from frender.apps.fetch import fetch as fetch_job
    from frender.apps.out_folder import read_state
    from frender.apps.progress import console, job_view
    from frender.transports import RemoteError, TransportError

    if requester is None:
        saved = read_state(out) or {}
        if saved.get("job") != job or not saved.get("requester"):
            fail(f"{out} does not follow job {job}: give --requester")
        requester = str(saved["requester"])
    address = _address(requester)
    result = None
    try:
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bars = Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
        ids = (bars.add_task("delivered", total=None), bars.add_task("final", total=None))
        with Live(bars, console=console, refresh_per_second=8, transient=False) as live:
            result = trio.run(
                lambda: fetch_job(
                    address, home, job, out, on_progress=lambda p: live.update(job_view(p, bars, ids)), on_note=lambda line: live.console.print(line)
                )
            )
    except* KeyboardInterrupt:
        pass
    except* SubmitRefused as group:
        fail(str(_leaves(group)[0]))
    except* RemoteError as group:
        exc = _leaves(group)[0]
        fail(f"the requester refused: {exc.reason} ({exc.code})")
    except* TransportError as group:
        fail(str(_leaves(group)[0]))
    if result is None:
        interrupted(out, requester, home)
    say_ended(result, out)
    if video is not None:
        write_video(video, out, None)


def say_ended(result: SubmitResult, out: Path) -> None:
    """The last line of a submit or a fetch; a job cancelled before any frame was final is an error (exit 1)."""
    if not result.progress.cancelled:
        typer.echo(f"job {result.job}: {len(result.frames)} frames in {out}")
    elif result.frames:
        typer.echo(f"job {result.job} was cancelled: {len(result.frames)} of {result.progress.total} frames final, in {out}")
    else:
        fail(
            f"job {result.job} was cancelled before any frame was final: {out} got no frames;"
            f" to render it anew, submit into another --out (or remove {out / '.frender-job.json'})"
        )


@app.command()
def link(
    job: int = typer.Argument(..., help="The job number (what submit printed; `frender jobs` lists them)."),
    requester: str = typer.Option(..., help="The requester's address."),
    home: Path = typer.Option(DEFAULT_HOME / "client", help="Your key: the one that submitted the job."),
) -> None:
    """Print the link to my job's page on the requester's dashboard (as submit does), valid for a week from now."""

    from frender.apps.client import dashboard_link
    from frender.apps.web import LINK_SECONDS

    url = call_or_fail("the requester", dashboard_link, _address(requester), home, job)
    if not url:
        fail("this requester serves no dashboard: its operator starts it with `frender run requester --web HOST:PORT`")
    typer.echo(url)
    typer.echo(f"(valid for {LINK_SECONDS // 86400} days; anyone holding it sees the job's page)", err=True)


@app.command()
def cancel(
    job: int = typer.Argument(..., help="The job number (`frender jobs` lists them)."),
    requester: str = typer.Option(..., help="The requester's address."),
    home: Path = typer.Option(DEFAULT_HOME / "client", help="Your key."),
) -> None:
    """Stop my job: its friends are released, final frames kept, the points not earned refunded. A job already over: said, exit 0."""
    import trio

    from frender.apps.fetch import AlreadyOver
    from frender.apps.fetch import cancel as cancel_job
    from frender.apps.out_folder import fetch_command
    from frender.transports import RemoteError, TransportError

    fetch_it = fetch_command(job, requester, "DIR", home)
    try:
        done = trio.run(cancel_job, _address(requester), home, job)
    except AlreadyOver as over:
        typer.echo(f"{over}; its final frames stay fetchable: {fetch_it}")
        return
    except RemoteError as exc:
        fail(f"job {job} was not cancelled: {exc.reason} ({exc.code})")
    except TransportError as exc:
        fail(str(exc))
    typer.echo(
        f"job {done.job} cancelled: {done.final} of {done.total} frames final and kept (fetch them: {fetch_it}); "
        f"{done.spent} of {points(done.escrowed)} escrowed paid to friends, {points(done.escrowed - done.spent)} refunded when the master closes the job"
    )


def write_video(target: Path, folder: Path | None, fps: float | None, pattern: str | None = None) -> None:
    """Assemble the frames of ``folder`` (by its job's naming pattern) or those ``pattern`` globs into ``target``."""
    from frender.apps.client import remembered_fps
    from frender.apps.video import VideoError, assemble, frames_glob, frames_in

    try:
        frames = frames_glob(pattern) if pattern is not None else frames_in(folder or Path("."))
        rate = fps or (remembered_fps(folder) if folder is not None else None)
        if rate is None:
            where = f"{folder} does not say its frame rate (it was not filled by `frender submit`)" if folder else "a glob says no frame rate"
            fail(f"{where}: give --fps")
        made = assemble(frames, target, fps=rate)
    except VideoError as exc:
        fail(str(exc))
    typer.echo(f"wrote {made.path}: {made.frames} frames, {made.width}x{made.height}, {float(made.fps):g} fps, H.264")


@app.command()
def video(
    target: Path = typer.Argument(..., help="The video to write (.mp4)."),
    source: Optional[Path] = typer.Option(None, "--from", help="A folder `frender submit` or `fetch` filled (its frames, named as the job names them)."),
    pattern: Optional[str] = typer.Option(None, "--glob", help="Frames made elsewhere, e.g. 'render/*.png', ordered by the number in their names."),
    fps: Optional[float] = typer.Option(None, help="Frames per second (default: the .blend's, remembered by `frender submit`)."),
) -> None:
    """Assemble final frames, in frame order, into an H.264 video. EXR frames get the Standard view (sRGB, clipped)."""
    if fps is not None and not 0 < fps <= 1000:
        fail("--fps is above 0 and at most 1000")
    if (source is None) == (pattern is None):
        fail("give the frames with --from DIR (a folder submit filled) or --glob 'DIR/*.png', one of the two")
    if source is not None and not source.is_dir():
        fail(f"{source}: no such folder")
    write_video(target, source, fps, pattern)
