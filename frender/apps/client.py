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
from typing import Callable, TypeVar

import attrs
import trio
from attrs import frozen

from frender.apps import artist, out_folder, pack, words
from frender.apps import messages as msg
from frender.apps.preflight import check_before_upload
from frender.blender import Backend, frame_name
from frender.transports import Address, FileHeader, FileLink, Identity, PeerGone, RemoteError, connect, file_header, single_error

__all__ = ["SubmitRefused", "SubmitResult", "UploadProgress", "submit", "status", "operator_call", "remembered_fps", "create_account", "jobs", "cancel",
           "dashboard_link"]

STATE_FILE = out_folder.STATE_FILE
FETCHES_AT_ONCE = 6  # final frames downloaded side by side
R = TypeVar("R")


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
        wanted = await msg.ask(session, msg.HaveUploads(sha256s=tuple(by_sha)))
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
    replaced: tuple[int, ...] = ()  # frames recalled after OUT got them, written again with their re-verified copies


async def _remembered(
    out: Path, request: dict[str, object], *, requester: Address, identity: Identity, home: Path, on_note: Callable[[str], None]
) -> out_folder.JobState | None:
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
                progress = await msg.ask(session, msg.Progress(job=job))
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


def _file_name(saved: out_folder.JobState, frame: int) -> str:
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
    tiles: str = "",
) -> SubmitResult:
    """Pack ``blend`` with its dependencies, render it on ``friends`` friends; returns once every frame is in ``out``.

    ``on_link`` gets the job's dashboard link (with its signed token) when the requester serves one.

    ``name``: a pattern for the files in ``out`` ("shot_####"), instead of the file's own output name.
    ``blender``: the Blender to render with ("4.2"); by default the series that saved the file.
    ``tiles``: "4x4" or "auto" renders each frame in tiles on many friends and stitches it (``on_note`` hears
    why when the file cannot be tiled and renders in whole frames instead).
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
        if tiles:  # another split of the same frames is another request
            request["tiles"] = tiles
        saved = await _remembered(out, request, requester=requester, identity=identity, home=home, on_note=on_note)
        if saved is None:
            await _upload_tree(requester, identity, packed, manifest, header.sha256, on_upload)
            async with connect(requester, identity) as session:
                submitted = await msg.ask(
                    session,
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
                        tiles=tiles,
                    )
                )
            if submitted.untiled:
                on_note(submitted.untiled)
            if submitted.denoised_after:
                on_note(submitted.denoised_after)
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
    job = int(saved["job"])
    await _dashboard_link(requester, identity, job, on_link)
    fetched: set[int] = set()
    while True:
        try:
            return await _follow(requester, identity, job, out, fetched, on_progress, poll, functools.partial(_file_name, saved), on_note)
        except* PeerGone:  # from the progress calls or any of the downloads
            pass
        await trio.sleep(1.0)  # the requester may be restarting: its log keeps the job


async def _dashboard_link(requester: Address, identity: Identity, job: int, on_link: Callable[[str], None]) -> None:
    """Hand the job's dashboard link to ``on_link``; a requester without one (or an older one, or a gone one) is no error."""
    try:
        async with connect(requester, identity) as session:
            reply = await msg.ask(session, msg.DashboardLink(job=job))
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
    on_note: Callable[[str], None] = lambda line: None,
) -> SubmitResult:
    """Follow the job until it finished and every final frame is in ``out``.

    Progress calls are held by the requester until more frames are delivered or final;
    meanwhile a few downloads run side by side, each over one connection for
    many frames, so frames come down while the job goes on and the last ones
    follow their finality at once. A frame recalled after it was final (a friend
    it rested on was caught forging) is deleted from ``out`` and said through
    ``on_note``; its re-verified copy is written once it is final again
    (``out_folder.Recalls``: a copy fetched before the latest recall never lands).
    """
    send, receive = trio.open_memory_channel[tuple[int, int]](math.inf)
    recalls = out_folder.Recalls(out, file_name)
    withdrawn: set[int] = set()  # frames recalled after OUT got them (or while they came down): the artist was told
    replaced: set[int] = set()

    async def download() -> None:
        async with FileLink(requester, identity) as link:  # one connection for many frames
            async for frame, generation in receive:
                target = out / file_name(frame)
                if not target.exists():
                    partial = out / f".{target.name}.{generation}.partial"
                    try:
                        await link.get(FileHeader(kind="frame", job=job, frame=frame), partial, max_size=1 << 30)
                    except RemoteError as exc:
                        if exc.code != "not-final":
                            raise
                        if recalls.generation(frame) == generation:  # recalled since it was listed: fetched again once final again
                            queued.discard(frame)
                        continue
                    if recalls.generation(frame) != generation:  # recalled while it came down: never lands
                        partial.unlink(missing_ok=True)
                        continue
                    os.chmod(partial, mode)  # downloads land private (0600); a frame is the user's file like any other
                    partial.replace(target)
                    if frame in withdrawn:  # OUT had (or was getting) the copy withdrawn: said replaced
                        replaced.add(frame)
                        on_note(words.replaced_text(frame, str(target)))
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
                    progress = await msg.ask(session, msg.Progress(job=job, final_known=known, delivered_known=delivered))
                    for recall, held in recalls.take(progress.recalled):
                        if held or recall.frame in queued:
                            withdrawn.add(recall.frame)
                            on_note(words.recall_text(recall.frame, rendered=recall.rendered))
                        queued.discard(recall.frame)
                        fetched.discard(recall.frame)
                    for frame in progress.final:
                        if frame not in queued:
                            queued.add(frame)
                            send.send_nowait((frame, recalls.generation(frame)))
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
            f"job {job} failed: {words.failure_text(progress.failed_cause, progress.failed)}"
            f" ({len(frames)} of {progress.total} frames final, in {out}; the points not earned are refunded)"
        )
    return SubmitResult(
        job=job, frames=frames, out=out, progress=progress, files=tuple(out / file_name(f) for f in frames), replaced=tuple(sorted(replaced))
    )


async def jobs(requester: Address, home: Path) -> msg.JobsReply:
    """The jobs the key in ``home`` submitted to ``requester``."""
    identity = Identity.load_or_create(home)
    async with connect(requester, identity) as session:
        return await msg.ask(session, msg.Jobs())


async def dashboard_link(requester: Address, home: Path, job: int) -> str:
    """The link to my ``job``'s page on the requester's dashboard ("": it serves none)."""
    identity = Identity.load_or_create(home)
    async with connect(requester, identity) as session:
        return (await msg.ask(session, msg.DashboardLink(job=job))).url


async def cancel(requester: Address, home: Path, job: int) -> msg.Cancelled:
    """Cancel my ``job``: friends released, final frames kept (``submit`` again fetches them), the rest refunded."""
    identity = Identity.load_or_create(home)
    async with connect(requester, identity) as session:
        return await msg.ask(session, msg.Cancel(job=job))


async def status(master: Address, home: Path) -> msg.StatusReply:
    """The master's whole status as the key in ``home`` may see it, fetched page by page and joined."""
    identity = Identity.load_or_create(home)
    async with connect(master, identity) as session:
        first = await msg.ask(session, msg.Status())
        friends, jobs, balances = list(first.friends), list(first.jobs), dict(first.balances)
        for page in range(1, first.pages):
            more = await msg.ask(session, msg.Status(page=page))
            friends.extend(more.friends)
            jobs.extend(more.jobs)
            balances.update(more.balances)
    return attrs.evolve(first, friends=tuple(friends), jobs=tuple(jobs), balances=balances, page=0, pages=1)


async def create_account(master: Address, home: Path, user: str) -> msg.AccountCreated:
    """Bind ``user`` to the key in ``home`` (created if missing); the user's friends use this key too."""
    identity = Identity.load_or_create(home)
    async with connect(master, identity) as session:
        return await msg.ask(session, msg.CreateAccount(user=user))


async def operator_call(master: Address, home: Path, request: msg.Asks[R]) -> R:
    """An operator command (grant, trust), signed by the key in ``home``."""
    identity = Identity.load_or_create(home)
    async with connect(master, identity) as session:
        return await msg.ask(session, request)

