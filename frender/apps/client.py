"""The artist's side: upload a .blend, follow the job, collect final frames.

``submit`` is resumable: the job it started is remembered in
``OUT/.frender-job.json`` (with the file's sha256, the requester and the frames
asked for), so running it again after an interruption follows the same job and
fetches only the frames that are not in OUT yet; ``frender fetch J`` (see
``frender.apps.fetch``) finds a job again by its number. Only the same request
resumes: another file or other frames are refused while OUT holds frames of
the first job or that job still runs (the refusal prints the command that
fetches it); a job that is over and left nothing in OUT is let go, and said.

Frames are named as the file's output path names them (``shot_####.exr`` ->
``shot_0001.exr``), or by ``name`` (a pattern with ``#`` for the frame number). The job's state file is JSON:
``{"job": J, "sha256": "<the manifest's>", "requester": "frender://…", "asked": [...], "frames": [...],
"name": "shot_####", "extension": ".exr", "fps": 24.0}`` (``fps``: the .blend's frame rate, for
``frender video``). Frames are written with the user's umask.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
from pathlib import Path
from typing import Callable

import attrs
import trio
from attrs import frozen

from frender.apps import artist, out_folder, pack
from frender.apps import messages as msg
from frender.apps.preflight import check_before_upload
from frender.blender import Backend, frame_name
from frender.transports import Address, FileHeader, FileLink, Identity, PeerGone, RemoteError, connect, file_header, single_error

__all__ = ["SubmitRefused", "SubmitResult", "UploadProgress", "submit", "status", "operator_call", "remembered_fps", "create_account", "jobs", "cancel",
           "dashboard_link"]

STATE_FILE = out_folder.STATE_FILE
FETCHES_AT_ONCE = 6  # final frames downloaded side by side


class SubmitRefused(Exception):
    """The client will not start this submit (OUT holds another job's frames, files are missing)."""


@frozen(kw_only=True)
class UploadProgress:
    """How the upload of a job tree goes: what is sent of what must be sent."""

    sent: int  # bytes
    total: int  # bytes to send (files the requester already holds are not sent)
    seconds: float
    files_sent: int
    files_total: int
    files_held: int  # already at the requester: not sent again

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        return (self.total - self.sent) / self.rate if self.rate > 0 else None

    def text(self) -> str:
        left = "" if self.seconds_left is None else f", {self.seconds_left:.0f} s left"
        return (
            f"uploaded {self.sent / 1e6:.1f} of {self.total / 1e6:.1f} MB at {self.rate / 1e6:.1f} MB/s{left}"
            f" ({self.files_sent} of {self.files_total} files; {self.files_held} already held)"
        )


async def _upload_tree(
    requester: Address, identity: Identity, packed: pack.Packed, manifest: Path, manifest_sha256: str, on_upload: Callable[[UploadProgress], None]
) -> None:
    """Upload the tree's files the requester lacks, by sha256, the manifest last."""
    by_sha = {f.sha256: packed.root / f.path for f in packed.manifest.files}
    by_sha[manifest_sha256] = manifest
    async with connect(requester, identity) as session:
        wanted = await session.call(msg.HaveUploads(sha256s=tuple(by_sha)))
    missing = set(wanted.missing)
    order = [sha for sha in by_sha if sha in missing and sha != manifest_sha256]
    order += [manifest_sha256] if manifest_sha256 in missing else []
    sizes = {sha: by_sha[sha].stat().st_size for sha in order}
    total, sent, started = sum(sizes.values()), 0, trio.current_time()
    report = functools.partial(UploadProgress, total=total, files_total=len(order), files_held=len(by_sha) - len(order))
    on_upload(report(sent=0, seconds=0.0, files_sent=0))
    async with FileLink(requester, identity) as link:
        for count, sha in enumerate(order, 1):

            def within(bytes_sent: int, before: int = sent, done: int = count - 1) -> None:
                # Told every few MB or ~0.2 s inside the file, so a large .blend shows its bytes, rate and time left.
                on_upload(report(sent=before + bytes_sent, seconds=trio.current_time() - started, files_sent=done))

            await link.put(FileHeader(kind="upload", job=sha, size=sizes[sha], sha256=sha), by_sha[sha], progress=within)
            sent += sizes[sha]
            on_upload(report(sent=sent, seconds=trio.current_time() - started, files_sent=count))


@frozen(kw_only=True)
class SubmitResult:
    job: int
    frames: tuple[int, ...]
    out: Path
    progress: msg.ProgressReply
    files: tuple[Path, ...] = ()  # the frames' files in OUT, in frame order


async def _remembered(
    out: Path, request: dict[str, object], *, requester: Address, identity: Identity, home: Path, on_note: Callable[[str], None]
) -> dict[str, object] | None:
    """The saved job when OUT's state names this very request; None when OUT may take a new job.

    OUT's job file is never replaced silently: a different request is refused
    while OUT holds frames of its job or that job still runs (the refusal says
    how to fetch it); a job that is over and left nothing in OUT is let go, and
    ``on_note`` says so.
    """
    saved = out_folder.read_state(out)
    if saved is None:
        return None
    if all(saved.get(key) == value for key, value in request.items()):
        return saved
    job, at = int(saved["job"]), str(saved.get("requester") or requester)
    fetch = out_folder.fetch_command(job, at, out, home)
    held = out_folder.held(out, saved)
    if held:
        raise SubmitRefused(
            f"{out} holds {len(held)} frames of job {job}, asked with another file or other frames;"
            f" fetch the rest of that job with `{fetch}`, or choose another output folder (or empty this one) for a new job"
        )
    try:
        with trio.fail_after(30):
            async with connect(Address.parse(at), identity) as session:
                progress = await session.call(msg.Progress(job=job))
    except RemoteError:  # the requester no longer knows it as ours: nothing to lose
        on_note(f"{out} followed job {job}, which {at} does not know as yours; a new job starts here")
        return None
    except (PeerGone, OSError, ValueError, trio.TooSlowError):
        raise SubmitRefused(
            f"{out} follows job {job} (another file or other frames), and its requester does not answer, so it may still run;"
            f" fetch it later with `{fetch}`, or choose another output folder for a new job"
        ) from None
    if not progress.finished:
        raise SubmitRefused(
            f"{out} follows job {job} (another file or other frames), still running: {len(progress.final)} of {progress.total} frames final;"
            f" fetch it with `{fetch}`, stop it with `{out_folder.cancel_command(job, at, home)}`, or choose another output folder for a new job"
        )
    kept = f"its {len(progress.final)} final frames are not in it; `{fetch}` gets them" if progress.final else "it left no final frames"
    on_note(f"{out} followed job {job}, which is over ({kept}); a new job starts here")
    return None


def _file_name(saved: dict, frame: int) -> str:
    try:
        return artist.frame_file(saved.get("name") or "frame_####", frame, saved.get("extension", ".png"))
    except ValueError:
        return frame_name(frame)


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
    name: str | None = None,
    allow_outside: bool = False,
    allow_missing: bool = False,
    on_upload: Callable[[UploadProgress], None] = lambda u: None,
    on_note: Callable[[str], None] = lambda line: None,
    blender: str = "",
    include_outside: bool = False,
    backend: Backend | None = None,
) -> SubmitResult:
    """Pack ``blend`` with its dependencies, render it on ``friends`` friends; returns once every frame is in ``out``.

    ``on_link`` gets the job's dashboard link (with its signed token) when the requester serves one.

    ``name``: a pattern for the files in ``out`` ("shot_####"), instead of the file's own output name.
    ``blender``: the Blender to render with ("4.2"); by default the series that saved the file.
    A dependency that is missing raises SubmitRefused naming it, unless ``allow_missing``; so does a file
    that must not leave this machine, one from outside the .blend's folder unless ``include_outside``, and
    a file the artist's Blender (``backend``, else the one found here) finds cannot render: before any upload.
    """
    if name is not None:
        artist.frame_file(name, 1, "")  # a bad pattern fails here, before anything is sent
    identity = Identity.load_or_create(home)
    try:
        packed = await trio.to_thread.run_sync(functools.partial(pack.pack, blend, include_outside=include_outside, keys=(home,)))
    except pack.PackRefused as exc:
        raise SubmitRefused(str(exc)) from None
    try:
        if packed.missing and not allow_missing:
            raise SubmitRefused(pack.missing_text(packed) + " (--allow-missing renders without them)")
        try:
            await check_before_upload(packed, frames, allow_outside=allow_outside, allow_missing=allow_missing, backend=backend)
        except artist.RequestRefused as exc:
            raise SubmitRefused(f"{exc.reason} ({exc.code})") from None
        out.mkdir(parents=True, exist_ok=True)
        manifest = packed.root.with_name(packed.root.name + ".manifest")
        manifest.write_bytes(packed.manifest.encode())
        header = await file_header(manifest, kind="upload", job="upload")
        request: dict[str, object] = {"sha256": header.sha256, "requester": str(requester), "asked": list(frames)}
        saved = await _remembered(out, request, requester=requester, identity=identity, home=home, on_note=on_note)
        if saved is None:
            await _upload_tree(requester, identity, packed, manifest, header.sha256, on_upload)
            async with connect(requester, identity) as session:
                submitted = await session.call(
                    msg.Submit(
                        user=user,
                        blend_sha256=header.sha256,
                        frames=frames,
                        friends=friends,
                        checks_per_friend=checks_per_friend,
                        allow_outside=allow_outside,
                        allow_missing=allow_missing,
                        tree=True,
                        priority=priority,
                        blender=blender,
                    )
                )
            saved = {**request, "job": submitted.job, "frames": list(submitted.frames), "name": submitted.name, "extension": submitted.extension,
                     "fps": submitted.fps}
            (out / STATE_FILE).write_text(json.dumps(saved))
            out_folder.remember_folder(home, str(requester), submitted.job, out)
    finally:
        shutil.rmtree(packed.root, ignore_errors=True)
        packed.root.with_name(packed.root.name + ".manifest").unlink(missing_ok=True)
    if name is not None and saved.get("name") != name:
        saved = {**saved, "name": name}
        (out / STATE_FILE).write_text(json.dumps(saved))  # `frender video` and a resume find the frames by this name
    job = int(saved["job"])  # type: ignore[call-overload]
    await _dashboard_link(requester, identity, job, on_link)
    fetched: set[int] = set()
    while True:
        try:
            return await _follow(requester, identity, job, out, fetched, on_progress, poll, functools.partial(_file_name, saved))
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
    file_name: Callable[[int], str] = frame_name,
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
                target = out / file_name(frame)
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
                    if progress.finished and (len(queued) == progress.total or progress.cancelled or progress.failed):  # its final frames are all
                        break
                    if (len(progress.final), progress.delivered) == (known, delivered):
                        await trio.sleep_until(asked + poll)  # one that answers at once is not asked in a loop
                    known, delivered = len(progress.final), progress.delivered
    # The downloads drained the queue before the nursery closed.
    frames = tuple(sorted(fetched))
    if progress.failed:
        raise SubmitRefused(
            f"job {job} failed: its file cannot render on the friends: {progress.failed}"
            f" ({len(frames)} of {progress.total} frames final, in {out}; the points not earned are refunded)"
        )
    return SubmitResult(job=job, frames=frames, out=out, progress=progress, files=tuple(out / file_name(f) for f in frames))


async def jobs(requester: Address, home: Path) -> msg.JobsReply:
    """The jobs the key in ``home`` submitted to ``requester``."""
    identity = Identity.load_or_create(home)
    async with connect(requester, identity) as session:
        return await session.call(msg.Jobs())


async def dashboard_link(requester: Address, home: Path, job: int) -> str:
    """The link to my ``job``'s page on the requester's dashboard ("": it serves none)."""
    identity = Identity.load_or_create(home)
    async with connect(requester, identity) as session:
        return (await session.call(msg.DashboardLink(job=job))).url


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

