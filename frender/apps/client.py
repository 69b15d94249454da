"""The artist's side: upload a .blend, follow the job, collect final frames.

``submit`` is resumable: the job it started is remembered in
``OUT/.frender-job.json`` (with the file's sha256 and the requester), so
running it again after an interruption follows the same job and fetches only
the frames that are not in OUT yet. That file is JSON:
``{"job": J, "sha256": "<the .blend's>", "requester": "frender://…", "fps": 24.0}``
(``fps``: the .blend's frame rate, for ``frender video``). Frames are written
as ``OUT/frame_####.png`` with the user's umask.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

import attrs
import trio
from attrs import frozen

from frender.apps import messages as msg
from frender.blender import frame_name
from frender.transports import Address, FileHeader, FileLink, Identity, PeerGone, RemoteError, connect, file_header, put_file, single_error

__all__ = ["SubmitResult", "submit", "status", "operator_call", "remembered_fps", "create_account", "jobs", "cancel"]

STATE_FILE = ".frender-job.json"
FETCHES_AT_ONCE = 6  # final frames downloaded side by side


@frozen(kw_only=True)
class SubmitResult:
    job: int
    frames: tuple[int, ...]
    out: Path
    progress: msg.ProgressReply


def _remembered(out: Path, sha256: str, requester: Address) -> int | None:
    try:
        saved = json.loads((out / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if saved.get("sha256") == sha256 and saved.get("requester") == str(requester):
        return int(saved["job"])
    return None


async def submit(
    blend: Path,
    *,
    requester: Address,
    user: str,
    home: Path,
    friends: int,
    out: Path,
    frames: tuple[int, ...] = (),
    checks_per_friend: int = 1,
    priority: int = 0,
    on_progress: Callable[[msg.ProgressReply], None] = lambda p: None,
    on_link: Callable[[str], None] = lambda url: None,
    poll: float = 0.3,
) -> SubmitResult:
    """Render ``blend`` on ``friends`` friends; returns once every frame is in ``out``.

    ``on_link`` gets the job's dashboard link (with its signed token) when the requester serves one.
    """
    identity = Identity.load_or_create(home)
    out.mkdir(parents=True, exist_ok=True)
    header = await file_header(blend, kind="upload", job="upload")
    job = _remembered(out, header.sha256, requester)
    if job is None:
        upload = FileHeader(kind="upload", job=header.sha256, size=header.size, sha256=header.sha256)
        await put_file(requester, identity, upload, blend)
        async with connect(requester, identity) as session:
            submitted = await session.call(
                msg.Submit(
                    user=user, blend_sha256=header.sha256, frames=frames, friends=friends, checks_per_friend=checks_per_friend, priority=priority
                )
            )
        job = submitted.job
        state = {"job": job, "sha256": header.sha256, "requester": str(requester), "fps": submitted.fps}
        (out / STATE_FILE).write_text(json.dumps(state))
    await _dashboard_link(requester, identity, job, on_link)
    fetched: set[int] = set()
    while True:
        try:
            return await _follow(requester, identity, job, out, fetched, on_progress, poll)
        except* PeerGone:  # from the progress calls or any of the downloads
            pass
        await trio.sleep(1.0)  # the requester may be restarting: its log keeps the job


async def _dashboard_link(requester: Address, identity: Identity, job: int, on_link: Callable[[str], None]) -> None:
    """Hand the job's dashboard link to ``on_link``; a requester without one (or an older one, or a gone one) is no error."""
    try:
        async with connect(requester, identity) as session:
            reply = await session.call(msg.DashboardLink(job=job))
    except (RemoteError, PeerGone):  # following the job retries a requester that is gone
        return
    if reply.url:
        on_link(reply.url)


def remembered_fps(out: Path) -> float | None:
    """The frame rate of the .blend whose frames are in ``out``, as the requester reported it on submit."""
    try:
        fps = float(json.loads((out / STATE_FILE).read_text()).get("fps") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return fps if fps > 0 else None


async def _follow(
    requester: Address,
    identity: Identity,
    job: int,
    out: Path,
    fetched: set[int],
    on_progress: Callable[[msg.ProgressReply], None],
    poll: float,
) -> SubmitResult:
    """Follow the job until it finished and every final frame is in ``out``.

    Progress calls are held by the requester until more frames are delivered or final;
    meanwhile a few downloads run side by side, each over one connection for
    many frames, so frames come down while the job goes on and the last ones
    follow their finality at once.
    """
    send, receive = trio.open_memory_channel[int](math.inf)

    async def download() -> None:
        async with FileLink(requester, identity) as link:  # one connection for many frames
            async for frame in receive:
                target = out / frame_name(frame)
                if not target.exists():
                    await link.get(FileHeader(kind="frame", job=job, frame=frame), target, max_size=1 << 30)
                    os.chmod(target, mode)  # downloads land private (0600); a frame is the user's file like any other
                fetched.add(frame)

    umask = os.umask(0o022)
    os.umask(umask)
    mode = 0o666 & ~umask
    queued = set(fetched)
    known = delivered = -1  # as of the last reply: the requester holds the next until either changes
    with single_error():
        async with trio.open_nursery() as nursery, connect(requester, identity) as session:
            for _ in range(FETCHES_AT_ONCE):
                nursery.start_soon(download)
            async with send:
                while True:
                    asked = trio.current_time()
                    progress = await session.call(msg.Progress(job=job, final_known=known, delivered_known=delivered))
                    for frame in progress.final:
                        if frame not in queued:
                            queued.add(frame)
                            send.send_nowait(frame)
                    on_progress(progress)
                    if progress.finished and (len(queued) == progress.total or progress.cancelled):  # cancelled: its final frames are all
                        break
                    if (len(progress.final), progress.delivered) == (known, delivered):
                        await trio.sleep_until(asked + poll)  # one that answers at once is not asked in a loop
                    known, delivered = len(progress.final), progress.delivered
    # The downloads drained the queue before the nursery closed.
    return SubmitResult(job=job, frames=tuple(sorted(fetched)), out=out, progress=progress)


async def jobs(requester: Address, home: Path) -> msg.JobsReply:
    """The jobs the key in ``home`` submitted to ``requester``."""
    identity = Identity.load_or_create(home)
    async with connect(requester, identity) as session:
        return await session.call(msg.Jobs())


async def cancel(requester: Address, home: Path, job: int) -> msg.Cancelled:
    """Cancel my ``job``: friends released, final frames kept (``submit`` again fetches them), the rest refunded."""
    identity = Identity.load_or_create(home)
    async with connect(requester, identity) as session:
        return await session.call(msg.Cancel(job=job))


async def status(master: Address, home: Path) -> msg.StatusReply:
    """The master's whole status as the key in ``home`` may see it, fetched page by page and joined."""
    identity = Identity.load_or_create(home)
    async with connect(master, identity) as session:
        first = await session.call(msg.Status())
        friends, jobs, balances = list(first.friends), list(first.jobs), dict(first.balances)
        for page in range(1, first.pages):
            more = await session.call(msg.Status(page=page))
            friends.extend(more.friends)
            jobs.extend(more.jobs)
            balances.update(more.balances)
    return attrs.evolve(first, friends=tuple(friends), jobs=tuple(jobs), balances=balances, page=0, pages=1)


async def create_account(master: Address, home: Path, user: str) -> msg.AccountCreated:
    """Bind ``user`` to the key in ``home`` (created if missing); the user's friends use this key too."""
    identity = Identity.load_or_create(home)
    async with connect(master, identity) as session:
        return await session.call(msg.CreateAccount(user=user))


async def operator_call(master: Address, home: Path, request: object) -> object:
    """An operator command (grant, trust), signed by the key in ``home``."""
    identity = Identity.load_or_create(home)
    async with connect(master, identity) as session:
        return await session.call(request)

