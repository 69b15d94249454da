"""What people see: the live progress of a job and the master's status, with rich.

Every name and reason here comes from a peer, so each goes in as ``safe_text``
(``frender.apps.terminal``): shown as it reads, never parsed as markup, its
control characters escaped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypedDict, Unpack

import trio
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from frender.apps import messages as msg
from frender.apps import words
from frender.apps.client import SubmitResult, UploadProgress, submit
from frender.apps.terminal import safe, safe_text
from frender.transports import Address

__all__ = ["follow", "job_view", "print_status", "print_jobs"]

console = Console(stderr=True)


class SubmitOptions(TypedDict, total=False):
    """What ``follow`` passes on to ``client.submit`` as it is (see there)."""

    name: str | None
    allow_outside: bool
    allow_missing: bool
    priority: int
    blender: str
    include_outside: bool
    on_note: Callable[[str], None]
    tiles: str


def job_view(p: msg.ProgressReply, bars: Progress, ids: tuple[TaskID, TaskID]) -> Group:
    """Bars for delivered and final frames (tiles, for a still in tiles), a line per friend, checks and evictions."""
    if p.tiles:  # counted in tiles within frames; a frame is final once stitched whole
        bars.update(ids[0], completed=p.tiles_delivered, total=p.total * p.tiles)
        bars.update(ids[1], completed=p.tiles_final, total=p.total * p.tiles)
    else:
        bars.update(ids[0], completed=p.delivered, total=p.total)
        bars.update(ids[1], completed=len(p.final), total=p.total)
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for column in ("friend", "delivered", "final", "checks", ""):
        table.add_column(column, justify="right" if column in ("delivered", "final", "checks") else "left")
    for line in p.friends:
        note = Text("evicted", style="red") if line.evicted else Text("gone", style="yellow") if line.gone else ""
        table.add_row(safe_text(line.friend), str(line.delivered), str(line.final), str(line.checks), note)
    summary = safe_text(f"job {p.job}: {p.checks} checks resolved, {p.disagreements} disagreements")
    if p.tiles:
        summary.append(f"\nin tiles: {p.tiles_final} of {p.total * p.tiles} tiles final ({p.tiles} a frame); {len(p.final)} of {p.total} frames stitched")
    if p.evictions:
        summary.append(safe(f", evicted: {', '.join(p.evictions)}"))
    if p.cancelled:
        summary.append(f"\ncancelled: {len(p.final)} of {p.total} frames final and kept", style="yellow")
    elif p.wanted and not p.active and not p.finished:
        why = words.waiting_text(p.waiting, p.waiting_detail) if p.waiting or p.waiting_detail else "waiting for friends: none free yet"
        summary.append("\n" + safe(f"{why} ({p.wanted} asked for); the job starts as friends free up"))
    elif p.wanted and p.active < p.wanted and not p.finished:
        summary.append(f"\nfriends: {p.active} of the {p.wanted} asked for; the job grows as friends free up")
    if not p.finished and p.final:
        summary.append(f"\n{words.time_left_text(p.eta)}")
    if again := words.recalled_text(p.recalled):
        summary.append("\n" + again, style="red")
    if p.problem:
        summary.append("\n" + safe(p.problem), style="yellow")
    return Group(bars, table, summary)


def follow(
    blend: Path, *, requester: Address, user: str, home: Path, friends: int, out: Path, frames: tuple[int, ...] = (), checks: int = 1,
    **options: Unpack[SubmitOptions],
) -> SubmitResult:
    """``client.submit`` with a live view; returns when every frame is in ``out``."""
    bars = Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    ids = (bars.add_task("delivered", total=None), bars.add_task("final", total=None))
    try:
        return _follow_live(blend, requester, user, home, friends, out, frames, checks, bars, ids, options)
    finally:
        if not console.is_terminal:
            console.line()  # off a terminal the last view ends without one: what follows starts on its own line


def _follow_live(
    blend: Path, requester: Address, user: str, home: Path, friends: int, out: Path, frames: tuple[int, ...], checks: int, bars: Progress,
    ids: tuple[TaskID, TaskID], options: SubmitOptions,
) -> SubmitResult:
    with Live(bars, console=console, refresh_per_second=8, transient=False) as live:

        def show(p: msg.ProgressReply) -> None:
            live.update(job_view(p, bars, ids))

        def link(url: str) -> None:
            live.console.print(safe_text(f"dashboard: {url}"), soft_wrap=True)

        def uploading(u: UploadProgress) -> None:
            live.update(Group(bars, safe_text(u.text())))

        return trio.run(
            lambda: submit(
                blend, requester=requester, user=user, home=home, friends=friends, out=out, frames=frames, checks_per_friend=checks,
                on_progress=show, on_upload=uploading, on_link=link,
                **options,
            )
        )


def print_jobs(reply: msg.JobsReply, folders: dict[int, str] | None = None) -> None:
    """``frender jobs``: one line per job of mine: its file and frames, where its frames go (``folders``), how it
    stands; readable on an 80-column terminal (long paths end in "…")."""
    folders = folders or {}
    priorities = any(j.priority for j in reply.jobs)
    table = Table(title="Your jobs", header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    table.add_column("job", justify="right", no_wrap=True)
    narrow = Console().width < 100  # on a narrow terminal long paths end in "…" and a waiting job's reason wraps
    table.add_column("file / frames → folder", no_wrap=True, overflow="ellipsis", max_width=26 if narrow else None)
    table.add_column("state", overflow="fold", max_width=14 if narrow else None)
    for column in ("final", "friends", "left", "points", *(("priority",) if priorities else ())):
        table.add_column(column, no_wrap=True, justify="right")
    for j in reply.jobs:
        friends = f"{j.active}/{j.wanted}" if j.state in ("running", "waiting") and j.wanted else str(j.active)
        left = "" if j.state != "running" else words.duration(j.eta)
        if j.failed:  # a failed job: why its file cannot render, or why no friend could go on with it
            state = safe_text(f"failed: {words.failure_text(j.failed_cause, j.failed)}")
        elif j.state == "waiting" and j.waiting:
            state = safe_text(words.waiting_text(j.waiting))
        else:
            state = safe_text(j.state)
        what = Path(j.file).name if j.file else "(a lone .blend)"
        where = " → ".join(part for part in (j.frames, _short_path(folders[j.job]) if j.job in folders else "") if part)
        points = f"{j.spent}/{j.escrowed}"  # earned by friends so far, of the escrow
        table.add_row(
            str(j.job), Text("\n").join([safe_text(what), safe_text(where)]), state, f"{j.final}/{j.total}", friends, left, points,
            *((str(j.priority),) if priorities else ()),
        )
    Console().print(table if reply.jobs else "no jobs of yours at this requester")
    if reply.jobs:
        Console().print("points: earned by friends so far / escrowed for the job", style="dim")


def _short_path(path: str) -> str:
    """A folder as a person reads it: under the home folder as ~/..., else as it is."""
    home = str(Path.home())
    return "~" + path[len(home):] if path == home or path.startswith(home + "/") else path


def print_status(reply: msg.StatusReply) -> None:
    """``frender status``: friends, jobs and balances, readable on an 80-column terminal."""
    out = Console()
    friends = Table(title="Friends", header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    for column in ("friend", "state", "profile", "standing"):
        friends.add_column(column, no_wrap=True)
    for f in reply.friends:
        # "paused", "outside schedule": the master assigns it nothing; "away": no heartbeat within the timeout
        state = words.friend_state(live=f.live, away=f.away, busy=f.busy, job=f.job)
        friends.add_row(
            safe_text(f.friend), safe_text(state), safe_text(words.short_profile(f.profile)),
            words.standing(f.reputation, f.trust_threshold),
        )
    jobs = Table(title="Jobs", header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    for column in ("job", "submitter", "frames", "friends", "evicted", "escrow", "paid", "state"):
        jobs.add_column(column)
    for j in reply.jobs:
        evicted = ", ".join(j.evicted) + (f" (+{j.evicted_count - len(j.evicted)})" if j.evicted_count > len(j.evicted) else "")
        friends_count = str(max(len(j.friends), j.friend_count))
        jobs.add_row(
            str(j.job), safe_text(j.submitter), str(j.frames), friends_count, safe_text(evicted), str(j.escrow), str(j.paid),
            j.state or ("closed" if j.closed else "running"),
        )
    balances = Table(title="Balances", header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    balances.add_column("user")
    balances.add_column("points", justify="right")
    for user, points in sorted(reply.balances.items()):
        balances.add_row(safe_text(user), str(points))
    # Notes go under the tables as lines of their own: a table's caption wraps to the table's width.
    standing = "standing: the requester's own checks passed in a row / needed to be trusted"
    totals = f"{reply.granted} points granted: {reply.total_balance} held by {reply.accounts} accounts, {reply.escrow} in escrow"
    out.print(friends, Text(standing, style="dim"), jobs, balances, Text(totals))
