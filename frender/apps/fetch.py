"""A job found again by its number: ``frender fetch J`` and ``frender cancel J``.

``fetch`` follows job J at its requester and writes its final frames into OUT,
named as the job names them, waiting for the rest while it runs; it is what the
hints printed by an interrupted ``submit`` and by ``cancel`` run. OUT's job file
is claimed as ``submit`` claims it (``client._remembered``): OUT holding frames of
another job, or following another job that still runs, is refused with the
command that fetches that one.

``cancel`` of a job that is already over is no error: the job runs no more
either way, and the reply says how it ended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import trio

from frender.apps import client, out_folder
from frender.apps import messages as msg
from frender.transports import Address, Identity, PeerGone, RemoteError, connect

__all__ = ["AlreadyOver", "cancel", "fetch"]


async def _job_line(requester: Address, identity: Identity, job: int) -> msg.JobLine:
    async with connect(requester, identity) as session:
        reply = await msg.ask(session, msg.Jobs())
    line = next((j for j in reply.jobs if j.job == job), None)
    if line is None:
        raise client.SubmitRefused(f"job {job} is not one of yours at {requester} (`frender jobs --requester ...` lists them; is --home your key?)")
    return line


async def fetch(
    requester: Address,
    home: Path,
    job: int,
    out: Path,
    *,
    on_progress: Callable[[msg.ProgressReply], None] = lambda p: None,
    on_note: Callable[[str], None] = lambda line: None,
    poll: float = 0.3,
) -> client.SubmitResult:
    """Follow ``job`` until it is over and write each final frame into ``out`` (those already there are kept)."""
    identity = Identity.load_or_create(home)
    line = await _job_line(requester, identity, job)
    out.mkdir(parents=True, exist_ok=True)
    request: dict[str, object] = {"job": job, "requester": str(requester)}
    saved = await client._remembered(out, request, requester=requester, identity=identity, home=home, on_note=on_note)
    if saved is None:
        saved = {**request, "name": line.name, "extension": line.extension, "fps": line.fps}
        (out / out_folder.STATE_FILE).write_text(json.dumps(saved))
        out_folder.remember_folder(home, str(requester), job, out)
    name = lambda frame: client._file_name(saved, frame)  # noqa: E731
    fetched: set[int] = set()
    while True:
        try:
            return await client._follow(requester, identity, job, out, fetched, on_progress, poll, name, on_note)
        except* PeerGone:  # the requester may be restarting: its log keeps the job
            pass
        await trio.sleep(1.0)


class AlreadyOver(Exception):
    """A cancel of a job that had finished or was cancelled before: nothing to stop."""

    def __init__(self, progress: msg.ProgressReply) -> None:
        how = "was cancelled before" if progress.cancelled else "already finished"
        super().__init__(f"job {progress.job} {how}: {len(progress.final)} of {progress.total} frames final; nothing to cancel")
        self.progress = progress


async def cancel(requester: Address, home: Path, job: int) -> msg.Cancelled:
    """Cancel ``job``; AlreadyOver when it had finished or was cancelled (the core refuses both as "job-state")."""
    identity = Identity.load_or_create(home)
    try:
        async with connect(requester, identity) as session:
            return await msg.ask(session, msg.Cancel(job=job))
    except RemoteError as exc:
        if exc.code != "job-state":
            raise
    async with connect(requester, identity) as session:
        progress = await msg.ask(session, msg.Progress(job=job))
    if not progress.finished:
        raise RemoteError("job-state", f"job {job} cannot be cancelled now; try again")
    raise AlreadyOver(progress)
