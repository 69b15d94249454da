"""The requester process: hosts clients' jobs, hands out work, verifies and pays.

The shell around ``frender.core.job``. Inputs become commands (with ``now``
and fresh ``entropy`` from here), durable events are committed to
``requester.db`` before anyone is answered, the state evolves, and a few
events ask this shell to act:

- ``ComparisonRequested``  -> compare two stored copies (a thread) -> RecordComparison
- ``OwnRenderRequested``   -> render the frame with our own Blender -> RecordOwnRender
- ``MoreFriendsWanted``    -> ask the master for more friends -> AddFriends
- ``JobFinished``          -> report to the master until it acknowledges
- ``JobCancelled``         -> the same closing report: the master releases the
                              friends and refunds what was not earned
- a job with fewer active friends than it asked for (``JobWants``) grows: the
  requester asks the master for the rest every ``grow_every`` seconds; a job
  the master opened with no friend free at all starts with none and waits
  the same way (the master's last reason is shown in its progress)

What is owed is a query of the core's state (``core.owed``: a check COMPARING
owes a comparison, one OWN or ARBITRATING a render, an ended job its report),
so a crash between an event and its reaction only delays the reaction, and what
no longer applies (a check un-assigned or voided, anything of an ended job) is
not owed by construction; a reaction that failed is retried after a
jittered, capped backoff; a report the master refuses for good is logged once
(``ReportRefused``), shown to the client, and not retried.

Commit, then evolve: the requester is a ``Node`` (frender/apps/node.py), which
decides on a draft, commits every ready call's events in one transaction (one
fsync), evolves ``state`` after, and stops on a failed append (``LogFailed``).

Files on disk are named from ids only: ``jobs/{job}/job.blend``,
``jobs/{job}/copies/{task}-{frame}.{ext}``, ``jobs/{job}/own/{check}.{ext}`` (ext: the file's output format),
``uploads/{sha256}.blend``. A frame is on disk (fsynced, renamed) before the
event that accepts it is committed.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import shutil
import secrets
import time
from pathlib import Path
from collections.abc import Awaitable
from typing import Any, Callable, ClassVar, TypeVar

import attrs
import trio
from attrs import frozen

from frender import blender, codec
from frender.apps import artist, pack
from frender.apps.master_link import MasterLink
from frender.apps.node import Node, Step
from frender.apps.uploads import Uploads, is_sha256
from frender.apps import messages as msg
from frender.core import job as core
from frender.core.profile import RenderProfile
from frender.store import LogFailed, SqliteLog
from frender.transports import (
    Address,
    AssignmentRefused,
    FileHeader,
    Handler,
    Identity,
    Limits,
    Peer,
    PeerGone,
    Refused,
    RemoteError,
    check_assignment,
    file_header,
    serve,
)

__all__ = [
    "JobAccepted", "JobOpening", "JobOpeningReleased", "FriendKeys", "LogFailed", "ReportDelivered", "ReportRefused", "RequesterNode",
    "RequesterSettings", "run_requester",
]

log = logging.getLogger("frender.requester")
R = TypeVar("R")

# ------------------------------------------------------------ shell events
# The core knows frames and friends; these record what only the shell knows.


@frozen(kw_only=True)
class JobAccepted:
    tag: ClassVar[str] = "job_accepted.v1"
    job: int
    submitter: str
    submitter_key: str
    blend_sha256: str
    width: int
    height: int
    profile: RenderProfile
    fps: float = 24.0  # the .blend's frame rate, for the job's video
    # The file's own output format: frames are stored, checked and compared in it.
    file_format: str = "PNG"
    color_depth: str = "8"
    color_mode: str = "RGBA"
    # A packed job tree: blend_sha256 names its manifest, this its main .blend ("" for a lone .blend).
    tree_main: str = ""
    # How a crop check's window is rendered: padded and aligned for a denoised file, as it is otherwise
    # (blender.crop_margins). Logs from before this choice padded every window: the defaults.
    crop_padding: int = attrs.field(default=blender.CROP_PADDING, metadata={"omit_if_default": True})
    crop_alignment: int = attrs.field(default=blender.CROP_ALIGNMENT, metadata={"omit_if_default": True})
    # How the client names the frames (artist.frame_file), so `frender fetch J` names them as the submit did.
    # Logs from before this kept no name: "" reads as frame_#### with the format's extension.
    name: str = attrs.field(default="", metadata={"omit_if_default": True})
    extension: str | None = attrs.field(default=None, metadata={"omit_if_default": True})
    # The JobOpening this job settles; "" in logs from before openings were logged.
    opening: str = attrs.field(default="", metadata={"omit_if_default": True})

    @property
    def output(self) -> blender.OutputFormat:
        return blender.OutputFormat(file_format=self.file_format, color_depth=self.color_depth, color_mode=self.color_mode)


@frozen(kw_only=True)
class JobOpening:
    """About to ask the master to open a job: logged before asking, so a job the master opens is never lost.

    An opening that no ``JobAccepted`` (same ``opening``) follows in the log is
    released at the master (``ReleaseOpening``) and then ``JobOpeningReleased``:
    a crash, a lost reply or a failed lay-out between the grant and the
    acceptance leaves no points held for a job nobody runs.
    """

    tag: ClassVar[str] = "job_opening.v1"
    opening: str  # fresh, secret: the master files the job under it (AskFriends.opening)
    submitter: str
    submitter_key: str
    blend_sha256: str
    frames: int
    friends: int
    priority: int = 0


@frozen(kw_only=True)
class JobOpeningReleased:
    """An opening that never became a job here: the master closed what it opened for it (``job``), or opened nothing."""

    tag: ClassVar[str] = "job_opening_released.v1"
    opening: str
    job: int | None = None


@frozen(kw_only=True)
class FriendKeys:
    """The key each granted friend proves: only it may fetch the job's file and deliver frames."""

    tag: ClassVar[str] = "friend_keys.v1"
    job: int
    keys: dict[str, str]  # friend -> key fingerprint


@frozen(kw_only=True)
class ReportDelivered:
    tag: ClassVar[str] = "report_delivered.v1"
    job: int
    head_seq: int
    head_hash: str


@frozen(kw_only=True)
class ReportRefused:
    """The master refused the job's report for good (any reason but "closed"): logged once, never retried."""

    tag: ClassVar[str] = "report_refused.v1"
    job: int
    code: str
    reason: str


@frozen(kw_only=True)
class JobWants:
    """How many friends the client asked for, and the job's priority: a job granted fewer grows to this."""

    tag: ClassVar[str] = "job_wants.v1"
    job: int
    friends: int
    priority: int = 0


SHELL_EVENTS = (JobAccepted, FriendKeys, ReportDelivered, ReportRefused, JobWants, JobOpening, JobOpeningReleased)
codec.register(*SHELL_EVENTS)

# Core events after which the core may owe new reactions (``core.owed``): they wake the reactor.
_REACTIONS = (core.ComparisonRequested, core.OwnRenderRequested, core.MoreFriendsWanted, core.JobFinished, core.JobCancelled, core.JobFailed)
# What a master's refusal may say that asking again can cure: it failed, and restarts from its log.
_TRANSIENT = frozenset({"internal"})
# Failures of an AskFriends after which the master may have opened the job: its opening is released to be sure.
_UNSETTLED = _TRANSIENT | {"master-unreachable"}


@frozen(kw_only=True)
class RequesterSettings:
    job: core.JobSettings = core.JobSettings(seconds_per_frame=5.0, startup_seconds=5.0)
    max_friends: int = 64
    max_frames: int = 10_000
    tick: float = 0.5  # seconds between deadline checks
    # A friend holding no task that has not asked for work for this long is gone
    # (idle friends ask every half second; rendering friends hold a task).
    friend_silence: float = 5.0
    hold_work: float = 2.0  # an idle friend's WantWork waits this long for work to appear
    hold_progress: float = 0.5  # a client's Progress waits this long for frames delivered or final
    master_retry: float = 1.0  # seconds before the first retry of a failed reaction (the master, a render)
    retry_max: float = 30.0  # retries back off, doubling and jittered, up to this
    render_limits: blender.Limits = blender.Limits(wall_seconds=600.0)
    upload_quota: int = 8 << 30  # bytes of uploads one user may hold here at once
    upload_ttl: float = 24 * 3600.0  # an upload is deleted this long after it arrived (a job keeps its own link)
    upload_balance: int = 1  # points an uploader's account must hold: a job costs at least one
    grow_every: float = 2.0  # seconds between asks for the friends a job still lacks


@frozen(kw_only=True)
class Owed:
    """The reactions owed now, by key: what the core's state waits for (``core.owed``), and openings to release."""

    comparisons: dict[tuple[int, int, str], core.OwedComparison]
    own_renders: dict[tuple[int, int], core.OwedRender]
    more_friends: dict[int, core.OwedFriends]
    reports: dict[int, core.OwedReport]
    openings: dict[str, JobOpening]


class RequesterNode(Node[core.Requester], Handler):
    """The requester's jobs, their files, and its answers to clients and friends: a ``Node`` over ``frender.core.job``."""

    def __init__(
        self,
        *,
        identity: Identity,
        home: Path,
        log: SqliteLog,
        master: Address,
        address: Address,
        backend: blender.Backend | blender.Runtimes,
        settings: RequesterSettings = RequesterSettings(),
        limits: Limits = Limits(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.home = home
        self.master = master
        self.address = address
        self.runtimes = blender.Runtimes.of(backend)  # the Blenders held: a job renders with its file's (blender.Runtimes)
        self.settings = settings
        self.limits = limits
        self.clock = clock  # the wall clock for commands' ``now``; waits and silences use trio's clock
        self.jobs: dict[int, JobAccepted] = {}
        self.keys: dict[int, dict[str, str]] = {}  # job -> friend -> key
        self.copies: dict[tuple[int, str], Path] = {}  # (job, sha256) -> a stored copy
        self.refused: dict[int, ReportRefused] = {}  # job -> the master's lasting refusal of its report
        self.reported: set[int] = set()  # ended jobs whose report the master took or refused for good
        self.openings: dict[str, JobOpening] = {}  # logged openings that are neither accepted nor released yet
        self._dropped: set[tuple[str, object]] = set()  # soft: reactions whose result the core refused (stale)
        self.wants: dict[int, JobWants] = {}  # job -> friends asked for and priority
        self.started: dict[int, float] = {}  # job -> when it started (the log's time), for the estimate
        self.master_problem = ""  # soft: why the master does not answer now; "" while it does
        self.short_why: dict[int, str] = {}  # soft: job -> why the master granted no more friends when last asked
        self.wake = trio.Event()  # set when new reactions are owed
        self._changed = trio.Event()  # set (and replaced) whenever the state changes
        self._contact: dict[tuple[int, str], float] = {}  # soft: (job, friend) -> trio time we last heard from it
        self._in_flight: set[object] = set()
        self._failures: dict[object, int] = {}  # reaction -> failed attempts in a row (its backoff)
        self._own_render_lock = trio.Lock()
        self._opening_now: set[str] = set()  # soft: openings whose submit still runs (the reactor leaves them alone)
        self._trees: dict[int, dict[str, str]] = {}  # tree job -> the sha256 of each of its files -> its path in the tree
        self.master_link = MasterLink(master, identity, limits=limits)  # every call to the master, on one session
        self.dashboard_link: Callable[[int], str] | None = None  # set when a web dashboard serves this node
        self.uploads = Uploads(home / "uploads")  # the artists' files, each owned by the keys that uploaded it
        self._verified: dict[tuple[Path, int, int, int], str] = {}  # soft: (path, inode, size, mtime) -> sha256 read
        super().__init__(log, core.Requester(), _evolve_core)  # folds the log, verifying its chain

    # ------------------------------------------------------------ the core

    def _fold(self, event: object) -> None:
        """A committed (or replayed) event: the core's state, and what this shell keeps of its own events."""
        match event:
            case JobAccepted(job=j, opening=o):
                self.jobs[j] = event
                self.openings.pop(o, None)
            case FriendKeys(job=j, keys=keys):
                self.keys.setdefault(j, {}).update(keys)
            case ReportRefused(job=j):
                self.refused[j] = event
                self.reported.add(j)
            case ReportDelivered(job=j):
                self.reported.add(j)
            case JobOpening(opening=o):
                self.openings[o] = event
            case JobOpeningReleased(opening=o):
                self.openings.pop(o, None)
            case JobWants(job=j):
                self.wants[j] = event
            case core.JobStarted(job=j, now=now):
                self.started[j] = now
            case core.CopyReceived(job=j, task=t, frame=f, sha256=sha):
                self.copies.setdefault((j, sha), self._copy_path(j, t, f))
            case core.OwnRenderReceived(job=j, check=c, sha256=sha):
                self.copies.setdefault((j, sha), self._own_path(j, c))
            case core.FriendsJoined(job=j, friends=granted):
                for g in granted:  # silence is counted from joining (or from this process's start, on replay)
                    self._heard_from(j, g.friend)
        super()._fold(event)

    @property
    def owed(self) -> Owed:
        """What the state waits for now (``core.owed``), less results the core refused, and the openings to release."""
        now = core.owed(self.state, reported=self.reported)
        dropped = self._dropped

        def keyed(kind: str, items: tuple) -> dict:
            return {item.key: item for item in items if (kind, item.key) not in dropped}

        return Owed(
            comparisons=keyed("comparisons", now.comparisons),
            own_renders=keyed("own_renders", now.own_renders),
            more_friends=keyed("more_friends", now.more_friends),
            reports=keyed("reports", now.reports),
            openings=dict(self.openings),
        )

    def _committed(self, batch: list[object]) -> None:
        """Wake held calls (a change of state) and reactions (a change of what is owed)."""
        self._changed.set()
        self._changed = trio.Event()
        if any(isinstance(e, _REACTIONS) for e in batch):
            self.wake.set()

    async def apply(self, *commands_or_events: object) -> list[object]:
        """Decide each core command in turn on the draft (shell events pass through), then return once the
        events are committed and evolved (``Node``: a refusal of any withdraws the call's events).

        A refusal also leaves only after the commit: it may have read events
        that other calls decided and have not committed yet.
        """
        try:
            return self.decide(*(_step(item) for item in commands_or_events))
        finally:
            await self.commit()

    def _now(self) -> float:
        return self.clock()

    def _heard_from(self, job: int, friend: str) -> None:
        self._contact[(job, friend)] = trio.current_time()

    def _backoff(self, failures: int) -> float:
        """Seconds before retrying after ``failures`` failures in a row: doubling, capped, jittered (no herd)."""
        ceiling = min(self.settings.retry_max, self.settings.master_retry * 2 ** min(failures - 1, 32))
        return ceiling * random.uniform(0.5, 1.0)

    @staticmethod
    def _entropy() -> str:
        return secrets.token_hex(16)

    # -------------------------------------------------------------- paths

    def _job_dir(self, job: int) -> Path:
        return self.home / "jobs" / str(job)

    def _extension(self, job: int) -> str:
        accepted = self.jobs.get(job)
        return ".png" if accepted is None else accepted.output.extension

    def _copy_path(self, job: int, task: int, frame: int) -> Path:
        return self._job_dir(job) / "copies" / f"{task}-{frame}{self._extension(job)}"

    def _own_path(self, job: int, check: int) -> Path:
        return self._job_dir(job) / "own" / f"{check}{self._extension(job)}"

    def _upload_path(self, sha256: str) -> Path:
        return self.uploads.path(sha256)

    # ------------------------------------------------------------ the RPC

    async def call(self, peer: Peer, request: object) -> object:
        msg.check_bounds(request)
        match request:
            case msg.Submit():
                return await self._submit(peer, request)
            case msg.DashboardLink(job=j):
                self._own_job(peer, j)
                return msg.DashboardLinkReply(url=self.dashboard_link(j) if self.dashboard_link else "")
            case msg.HaveUploads(sha256s=wanted):
                if len(wanted) > pack.MAX_FILES + 1 or not all(is_sha256(s) for s in wanted):
                    raise Refused("bad-request", f"ask about at most {pack.MAX_FILES + 1} sha256 digests")
                return msg.UploadsWanted(missing=self.uploads.missing(peer.fingerprint, wanted))  # the caller's own uploads only
            case msg.Progress(job=j, final_known=final, delivered_known=delivered):
                return await self._progress_after(self._own_job(peer, j), final, delivered)
            case msg.Cancel(job=j):
                return await self._cancel(self._own_job(peer, j))
            case msg.Jobs():
                return msg.JobsReply(jobs=tuple(self._job_line(a) for a in self.jobs.values() if a.submitter_key == peer.fingerprint))
            case msg.WantWork(assignment=signed, keeping=keeping):
                return await self._want_work(peer, signed, keeping)
            case msg.GiveBack(assignment=signed, task=task, error=error):
                assignment = self._check(peer, signed)
                await self.apply(
                    core.ReturnTask(job=assignment.job, friend=assignment.friend, task=task, error=error, entropy=self._entropy(), now=self._now())
                )
                if error and core.summary(self.state, assignment.job).failed:
                    log.warning("job %d failed: its friends cannot render the file (%s)", assignment.job, error)
                return msg.Ok()
        raise Refused("unsupported", f"the requester does not answer {type(request).__name__}")

    def _own_job(self, peer: Peer, job: int) -> JobAccepted:
        accepted = self.jobs.get(job)
        if accepted is None or accepted.submitter_key != peer.fingerprint:
            raise Refused("unknown-job", f"job {job} is not one of yours")
        return accepted

    def _check(self, peer: Peer, signed) -> object:
        """A friend's master-signed assignment, for this requester and this peer's key."""
        assignment = check_assignment(
            signed,
            master_fingerprint=self.master.fingerprint,
            now=self._now(),
            requester_key=self.identity.fingerprint,
            friend_key=peer.fingerprint,
        )
        if assignment.job not in self.jobs:
            raise AssignmentRefused(f"job {assignment.job} is not hosted here")
        return assignment

    async def _submit(self, peer: Peer, submit: msg.Submit) -> msg.Submitted:
        account = await self._account_of(peer)  # before any inspection: Blender runs only for accounts with points
        if account.user != submit.user:
            raise Refused("name-taken", f"your key holds the account {account.user!r}, not {submit.user!r}")
        blend_path = self._upload_path(submit.blend_sha256)
        if not self.uploads.owns(peer.fingerprint, submit.blend_sha256):  # whoever else uploaded it
            raise Refused("no-upload", "upload the .blend yourself first (put kind 'upload' named by its sha256)")
        if not 1 <= submit.friends <= self.settings.max_friends:
            raise Refused("bad-job", f"ask for 1 to {self.settings.max_friends} friends")
        manifest = None
        if submit.tree:
            manifest, info, backend = await self._inspect_tree(submit.blend_sha256, peer.fingerprint, submit.blender)
        else:
            backend = await self._runtime_for(blend_path, submit.blender)
            try:
                info = await blender.inspect(backend, blend_path, limits=self.settings.render_limits)
            except blender.BlenderError as exc:
                raise Refused("bad-blend", str(exc).splitlines()[0]) from None
        if info.refusals:
            raise Refused("refused-blend", "; ".join(info.refusals))
        try:
            asked = artist.check_request(info, submit.frames, allow_outside=submit.allow_outside, allow_missing=submit.allow_missing)
        except artist.RequestRefused as exc:
            raise Refused(exc.code, exc.reason) from None
        frames = asked.frames
        if not 1 <= len(frames) <= self.settings.max_frames or len(set(frames)) != len(frames):
            raise Refused("bad-job", f"a job is 1 to {self.settings.max_frames} distinct frames")
        if not 0 <= submit.checks_per_friend <= 16:
            raise Refused("bad-job", "checks per friend are 0 to 16")
        # The job's profile: the file's Blender on this machine, naming the file's engine; a GPU engine's friends
        # share its GL renderer.
        profile = (await blender.probe(backend)).for_engine(info.engine)
        # Crop windows are compared as 8-bit PNG: other formats are checked on whole frames, in their own precision;
        # so are files whose compositor or sequencer makes a window differ from the frame (info.crop_unsafe).
        crops = self.settings.job.crop_checks and (asked.output.file_format, asked.output.color_depth) == ("PNG", "8")
        if crops and info.crop_unsafe:
            log.info("checking on whole frames: a window of this file differs from the frame (%s)", ", ".join(info.crop_unsafe))
            crops = False
        settings = attrs.evolve(self.settings.job, checks_per_friend=submit.checks_per_friend, crop_checks=crops)
        opening = JobOpening(
            opening=self._entropy(),
            submitter=submit.user,
            submitter_key=peer.fingerprint,
            blend_sha256=submit.blend_sha256,
            frames=len(frames),
            friends=submit.friends,
            priority=submit.priority,
        )
        await self.apply(opening)  # before the master escrows anything: every job it opens is one we will settle
        self._opening_now.add(opening.opening)
        try:
            return await self._open(submit, peer, opening, frames=frames, settings=settings, profile=profile, info=info, asked=asked, manifest=manifest)
        finally:
            self._opening_now.discard(opening.opening)
            if opening.opening in self.openings:  # not accepted: the reactor releases it at the master
                self.wake.set()

    async def _open(
        self, submit: msg.Submit, peer: Peer, opening: JobOpening, *, frames, settings, profile, info, asked, manifest
    ) -> msg.Submitted:
        """Ask the master to open the logged ``opening``, lay the job out, and accept it (``JobAccepted``)."""
        try:
            granted = await self._ask_master(
                msg.AskFriends(
                    submitter=submit.user,
                    submitter_key=peer.fingerprint,
                    frames=len(frames),
                    want=submit.friends,
                    profile=profile,
                    checks_per_friend=settings.checks_to_escrow(len(frames), submit.friends),
                    blend_sha256=submit.blend_sha256,
                    address=str(self.address),
                    priority=submit.priority,
                    opening=opening.opening,
                ),
                retry=False,
            )
        except Refused as exc:
            if exc.code not in _UNSETTLED:  # the master answered: it opened nothing
                await self.apply(JobOpeningReleased(opening=opening.opening))
            raise
        blend_path = self._upload_path(submit.blend_sha256)
        crop_padding, crop_alignment = blender.crop_margins(denoised=info.denoiser is not None)
        job_dir = self._job_dir(granted.job)
        (job_dir / "copies").mkdir(parents=True, exist_ok=True)
        (job_dir / "own").mkdir(exist_ok=True)
        if not (job_dir / "job.blend").exists():
            os.link(blend_path, job_dir / "job.blend")  # for a tree, its manifest
        if manifest is not None:
            await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, job_dir / "tree", self._upload_path, link=True))
        width, height = info.resolution
        now = self._now()
        await self.apply(
            JobAccepted(
                job=granted.job,
                submitter=submit.user,
                submitter_key=peer.fingerprint,
                blend_sha256=submit.blend_sha256,
                width=width,
                height=height,
                profile=profile,
                fps=info.fps,
                file_format=asked.output.file_format,
                color_depth=asked.output.color_depth,
                color_mode=asked.output.color_mode,
                tree_main=manifest.main if manifest is not None else "",
                crop_padding=crop_padding,
                crop_alignment=crop_alignment,
                name=asked.name,
                extension=asked.extension,
                opening=opening.opening,
            ),
            _keys(granted),
            JobWants(job=granted.job, friends=submit.friends, priority=submit.priority),
            core.StartJob(
                job=granted.job,
                frames=tuple(frames),
                settings=settings,
                checks_escrowed=settings.checks_to_escrow(len(frames), submit.friends),
                now=now,
            ),
            *(
                [  # none granted: the job waits in the master's queue, and grow_forever asks for its friends
                    _joining(granted, entropy=self._entropy(), now=now)
                ]
                if granted.friends
                else []
            ),
        )
        log.info("job %d: %d frames for %s on %d friends", granted.job, len(frames), submit.user, len(granted.friends))
        if not granted.friends:
            log.info("job %d: no friend is free yet; it waits for the %d asked for", granted.job, submit.friends)
        elif granted.shortfall:
            log.info("job %d: %d of the %d friends asked for are busy; it grows as they free up", granted.job, granted.shortfall, submit.friends)
        return msg.Submitted(
            job=granted.job, frames=tuple(frames), width=width, height=height, fps=info.fps,
            name=asked.name, extension=asked.extension, output=asked.output.describe(),
        )

    async def _progress_after(self, accepted: JobAccepted, final: int, delivered: int) -> msg.ProgressReply:
        """The progress once more than ``final`` frames are final, the delivered count is not
        ``delivered`` (when that is >= 0), or the job finished (held at most hold_progress)."""
        def unchanged() -> bool:
            now_delivered, now_final = core.delivered_and_final(self.state, accepted.job)
            return (
                0 <= final
                and now_final <= final
                and (delivered < 0 or now_delivered == delivered)
                and not core.is_finished(self.state, accepted.job)
            )

        with trio.move_on_after(self.settings.hold_progress):
            while unchanged():
                await self._changed.wait()
        return self._progress(accepted)

    def _progress(self, accepted: JobAccepted) -> msg.ProgressReply:
        j = core.summary(self.state, accepted.job)
        lines = core.progress(self.state, accepted.job)
        problem = ""
        if j.stalled:
            problem = "every friend of this job is gone; waiting for the master to grant more"
        if j.failed:
            problem = f"the file cannot render on the friends: {j.failure}"
        if (refusal := self.refused.get(accepted.job)) is not None:
            problem = f"the master refused this job's report ({refusal.code}: {refusal.reason}); nobody is paid until an operator acts"
        elif self.master_problem:
            problem = self.master_problem
        wants = self.wants.get(accepted.job)
        active = sum(1 for p in lines if p.status == "active")
        if not problem and not active and not j.finished and (why := self.short_why.get(accepted.job)):
            problem = f"the master: {why}"
        return msg.ProgressReply(
            job=accepted.job,
            total=j.total,
            delivered=j.delivered,
            final=j.final,
            friends=tuple(
                msg.FriendLine(friend=p.friend, delivered=p.delivered, final=p.final, checks=p.checks_paid, evicted=p.evicted) for p in lines
            ),
            checks=j.resolved,
            disagreements=j.disagreements,
            evictions=j.evicted,
            finished=j.finished,
            problem=problem,
            cancelled=j.cancelled,
            wanted=wants.friends if wants is not None else 0,
            active=active,
            own_renders=j.own_renders,
            spot_checks=j.spot_checks,
            failed=j.failure,
        )

    async def _runtime_for(self, blend: Path, requested: str) -> blender.Backend:
        """The Blender that renders ``blend``: its own series, or the one the artist named (blender.Runtimes)."""
        try:
            return await self.runtimes.for_file(blend, requested)
        except (blender.NoRuntime, blender.NewerBlendFile, blender.NotABlendFile) as exc:
            raise Refused("no-blender", str(exc)) from None

    async def _inspect_tree(
        self, manifest_sha256: str, submitter_key: str, requested: str = ""
    ) -> tuple[pack.Manifest, blender.BlendInfo, blender.Backend]:
        """Check an uploaded job tree, lay it out, and inspect and guard every .blend in it with the main file's Blender.

        Every file of the tree must be the submitter's own upload: another
        account's file is never reached by naming its sha256.

        The main file's facts stand for the job; every library's refusals and
        missing files are added to them, named by the library's path.
        """
        try:
            manifest = pack.read_manifest(self._upload_path(manifest_sha256).read_bytes())
        except (OSError, ValueError) as exc:
            raise Refused("bad-tree", f"the job tree's manifest is unusable: {exc}") from None
        absent = [f.path for f in manifest.files if not self.uploads.owns(submitter_key, f.sha256)]
        if absent:
            raise Refused("no-upload", "upload these files of the tree yourself first: " + ", ".join(absent[:8]))
        root = self.home / "trees" / manifest_sha256
        await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, root, self._upload_path, link=True))
        backend = await self._runtime_for(root / manifest.blends[0], requested)
        infos = []
        for path in manifest.blends:
            try:
                infos.append(await blender.inspect(backend, root / path, limits=self.settings.render_limits, job_dir=root))
            except blender.BlenderError as exc:
                raise Refused("bad-blend", f"{path}: {str(exc).splitlines()[0]}") from None
        main = infos[0]
        refusals = list(main.refusals)
        missing = list(main.missing)
        for path, info in zip(manifest.blends[1:], infos[1:]):
            refusals += [f"library {path}: {reason}" for reason in info.refusals]
            missing += [m for m in info.missing if m not in missing]
        return manifest, attrs.evolve(main, refusals=tuple(refusals), missing=tuple(missing)), backend

    def _tree_files(self, job: int) -> dict[str, str]:
        """The sha256 of every file in a tree job -> its path in the tree (read from its manifest once)."""
        if job not in self._trees:
            self._trees[job] = {f.sha256: f.path for f in pack.read_manifest((self._job_dir(job) / "job.blend").read_bytes()).files}
        return self._trees[job]

    def _tree_file(self, job: int, sha256: str) -> Path:
        """The job's own link to a file of its tree: what its friends fetch and its own renders read, whatever
        becomes of the uploads (they expire, and are never another owner's to hand out)."""
        return self._job_dir(job) / "tree" / self._tree_files(job)[sha256]

    def _job_line(self, accepted: JobAccepted) -> msg.JobLine:
        """One line of ``frender jobs``: state, frames, friends, an estimate from the pace so far, points."""
        job = accepted.job
        j = core.summary(self.state, job)
        escrowed, spent = core.points(self.state, job)
        wants = self.wants.get(job)
        elapsed = self._now() - self.started.get(job, self._now())
        final = len(j.final)
        eta = 0.0 if j.finished else (elapsed / final * (j.total - final) if final and elapsed > 0 else -1.0)
        active = sum(1 for p in core.progress(self.state, job) if p.status == "active") if not j.finished else 0
        return msg.JobLine(
            job=job,
            state="waiting" if not j.finished and not active else str(j.phase),
            final=final,
            total=j.total,
            active=active,
            wanted=wants.friends if wants is not None else 0,
            eta=eta,
            escrowed=escrowed,
            spent=spent,
            priority=wants.priority if wants is not None else 0,
            name=accepted.name or "frame_####",
            extension=accepted.output.extension if accepted.extension is None else accepted.extension,
            fps=accepted.fps,
            failed=j.failure,
        )

    async def _cancel(self, accepted: JobAccepted) -> msg.Cancelled:
        """Cancel the job (the core refuses a finished one); the closing report to the master is owed from here on."""
        job = accepted.job
        await self.apply(core.CancelJob(job=job, entropy=self._entropy(), now=self._now()))
        escrowed, spent = core.points(self.state, job)
        log.info("job %d cancelled by its submitter: %d frames final, %d of %d points earned", job, len(core.summary(self.state, job).final), spent, escrowed)
        return msg.Cancelled(job=job, final=len(core.summary(self.state, job).final), total=core.frame_count(self.state, job), escrowed=escrowed, spent=spent)

    async def _want_work(self, peer: Peer, signed, keeping: tuple[int, ...]) -> msg.Work | msg.NoWork:
        """Work for the friend; with none yet, hold the call until some appears (no polling gap)."""
        assignment = self._check(peer, signed)
        job, friend = assignment.job, assignment.friend
        if self.keys.get(job, {}).get(friend) != peer.fingerprint:
            raise AssignmentRefused(f"{friend} was not granted to job {job} here")
        with trio.move_on_after(self.settings.hold_work):
            while True:
                self._heard_from(job, friend)
                offer = await self._offer(job, friend, keeping)
                if offer is not None:
                    return offer
                await self._changed.wait()
        return msg.NoWork(retry_after=0.1)

    async def _offer(self, job: int, friend: str, keeping: tuple[int, ...]) -> msg.Work | msg.NoWork | None:
        """A task for ``friend``, the news that its job is over, or None: nothing yet."""
        if core.is_finished(self.state, job):
            return msg.NoWork(over=True, why=self._over(job))
        now = self._now()
        try:
            decided = await self.apply(core.AskForTask(job=job, friend=friend, keeping=keeping, entropy=self._entropy(), now=now))
        except Refused as exc:
            if exc.code == "job-state":  # it finished in a commit that was pending when we looked
                return msg.NoWork(over=True, why=self._over(job))
            raise
        for event in decided:
            if isinstance(event, core.TaskAssigned) and event.friend == friend:
                accepted = self.jobs[job]
                # Rule 4 of the core: the friend learns task, frames and deadline only.
                crop = _crop(core.window_of(self.state, job, event.task), accepted)
                return msg.Work(
                    job=job,
                    task=event.task,
                    frames=event.frames,
                    deadline=max(event.deadline - now, 1.0),
                    width=accepted.width,
                    height=accepted.height,
                    window=None if crop is None else msg.CropBox(left=crop[1].left, top=crop[1].top, width=crop[1].width, height=crop[1].height),
                )
        outlook = core.outlook(self.state, job, friend)
        if outlook in ("done", "evicted"):
            return msg.NoWork(over=True, why=outlook)
        return None

    def _over(self, job: int) -> str:
        j = core.summary(self.state, job)
        if j.failed:
            return f"the job failed: its file cannot render ({j.failure})"
        return "the job was cancelled" if j.cancelled else "the job is finished"

    # ------------------------------------------------------------ the files

    def _friends_of(self, peer: Peer, job: int) -> list[str]:
        """The job's friends whose key the peer proved: one owner may run several friends with one key."""
        mine = [friend for friend, key in self.keys.get(job, {}).items() if key == peer.fingerprint]
        if not mine:
            raise Refused("not-assigned", f"your key is not a friend of job {job} here")
        return mine

    def _sender_of(self, peer: Peer, job: int, frame: int) -> tuple[str, int]:
        """The friend, of those the peer's key proves, whose live task waits for ``frame``; and that task.

        The key proves the owner; the task (the friend's name holds it) picks the friend among that owner's friends.
        """
        for friend in self._friends_of(peer, job):
            task = core.holder_of(self.state, job, friend, frame)
            if task is not None:
                return friend, task
        raise Refused("not-yours", f"frame {frame} of job {job} is not in a task you hold")

    async def _account_of(self, peer: Peer) -> msg.AccountInfo:
        """The peer's account as the master knows it; refused unless it exists and holds enough points."""
        account = await self._ask_master(msg.AccountOf(key=peer.fingerprint), retry=False)
        if not account.user:
            raise Refused("no-account", "your key holds no account: bind a username first (frender account create NAME --master ...)")
        if account.balance < self.settings.upload_balance:
            raise Refused("short-balance", f"{account.user} has {account.balance} points; a job needs at least {self.settings.upload_balance}")
        return account

    def _expire_uploads(self) -> None:
        """Delete uploads older than upload_ttl (a submitted job holds its own link to its file)."""
        # File times are wall-clock times; an open put counts until its body is due (trio time).
        self.uploads.expire(self.clock() - self.settings.upload_ttl, trio.current_time())

    async def accept_put(self, peer: Peer, header: FileHeader) -> Path:
        if header.kind == "upload":
            if header.job != header.sha256 or not is_sha256(header.sha256):
                raise Refused("bad-upload", "an upload is named by its own sha256 (64 lowercase hex digits)")
            await self._account_of(peer)  # before a byte is stored: anonymous or penniless keys upload nothing
            self._expire_uploads()
            now = trio.current_time()
            used = self.uploads.used(peer.fingerprint, now, besides=header.sha256)
            if used + header.size > self.settings.upload_quota:
                raise Refused("quota", f"your uploads here hold {used} bytes; the quota is {self.settings.upload_quota}")
            # Reserved now, so concurrent puts cannot pass the quota together; the transport's body deadline bounds the wait.
            self.uploads.reserve(peer.fingerprint, header.sha256, header.size, now + 2 * self.limits.message_deadline + header.size / self.limits.min_file_rate)
            path = self._upload_path(header.sha256)
            path.parent.mkdir(parents=True, exist_ok=True)
            return path
        if header.kind == "frame" and isinstance(header.job, int) and header.job in self.jobs:
            self._friends_of(peer, header.job)
            if core.is_finished(self.state, header.job):  # before a byte is sent: a finished or cancelled job takes no frames
                raise Refused("job-over", f"{self._over(header.job)}: frames of job {header.job} are no longer taken")
            friend, task = self._sender_of(peer, header.job, header.frame)
            self._heard_from(header.job, friend)
            await self._bound_frame(header, friend, task)
            # Each put has a file of its own; put_done links it to the copy's name only once it is accepted.
            return self._copy_path(header.job, task, header.frame).with_suffix(f".{secrets.token_hex(8)}.put")
        raise Refused("not-accepted", f"no {header.kind} is accepted for job {header.job!r}")

    async def _bound_frame(self, header: FileHeader, friend: str, task: int) -> None:
        """Refuse a frame larger than its job's format can need, before a byte is stored: a bad frame (a fault, as today)."""
        accepted = self.jobs[header.job]
        crop = _crop(core.window_of(self.state, header.job, task), accepted)
        width, height = (accepted.width, accepted.height) if crop is None else (crop[1].width, crop[1].height)
        out = accepted.output
        bound = blender.max_frame_bytes(out.file_format, out.color_depth, out.color_mode, width, height)
        if header.size <= bound:
            return
        reason = f"a {width}x{height} {out.describe()} frame takes at most {bound} bytes; this one announced {header.size}"
        try:  # the core treats it as it treats any frame that does not decode
            await self.apply(
                core.DeliverFrame(
                    job=header.job, friend=friend, task=task, frame=header.frame, ok=False, reason=reason, entropy=self._entropy(), now=self._now()
                )
            )
        except Refused:
            pass
        raise Refused("frame-too-large", f"{reason}: render the job's own format and size, and send the image alone")

    async def put_done(self, peer: Peer, header: FileHeader, path: Path) -> object:
        if header.kind == "upload":
            self.uploads.arrived(peer.fingerprint, header.sha256, header.size)  # hers now: it counts while its file is here
            return msg.Ok()
        try:
            return await self._frame_done(peer, header, path)
        finally:
            path.unlink(missing_ok=True)

    async def _frame_done(self, peer: Peer, header: FileHeader, path: Path) -> msg.FrameStored:
        """Decode the put's own file, link it to the copy's name (never over an accepted copy), then deliver."""
        job = header.job
        task = int(path.name.split("-")[0])
        friend = core.task_friend(self.state, job, task) or ""
        if friend not in self._friends_of(peer, job):
            raise Refused("not-yours", f"task {task} of job {job} is not one of your friends'")
        accepted = self.jobs[job]
        ok, reason = True, ""
        crop = _crop(core.window_of(self.state, int(job), task), accepted)
        width, height = (accepted.width, accepted.height) if crop is None else (crop[1].width, crop[1].height)
        try:
            await trio.to_thread.run_sync(lambda: blender.decode_output(path, accepted.output, width=width, height=height))
        except blender.BadImage as exc:
            ok, reason = False, str(exc)
        target = self._copy_path(job, task, header.frame)
        linked = False
        if ok:
            # Nothing serves or compares this link before the commit: copies are found through the log (self.copies),
            # and the link is removed again if the core does not accept the delivery.
            try:
                os.link(path, target)
            except FileExistsError:
                if target in self.copies.values():
                    raise Refused("already-stored", f"frame {header.frame} of task {task} is stored; an accepted copy is never replaced") from None
                os.replace(path, target)  # debris of a crash between link and commit: no event names it
            linked = True
        try:
            decided = await self.apply(
                core.DeliverFrame(
                    job=job, friend=friend, task=task, frame=header.frame, sha256=header.sha256, ok=ok, reason=reason,
                    entropy=self._entropy(), now=self._now(),
                )
            )
        except BaseException:
            if linked:
                target.unlink(missing_ok=True)
            raise
        if linked:
            if any(isinstance(e, core.CopyReceived) and e.sha256 == header.sha256 for e in decided):
                self._remember_hash(target, header.sha256)  # the transport hashed these bytes as they arrived
            else:
                target.unlink(missing_ok=True)
        return msg.FrameStored(frame=header.frame, ok=ok, reason=reason)

    def _remember_hash(self, path: Path, sha256: str, info: os.stat_result | None = None) -> None:
        """Cache what this version of ``path`` (inode, size, mtime) hashes to; a changed file misses the cache."""
        info = info or path.stat()
        if len(self._verified) >= 4096:
            del self._verified[next(iter(self._verified))]
        self._verified[(path, info.st_ino, info.st_size, info.st_mtime_ns)] = sha256

    async def _checked(self, path: Path, sha256: str) -> Path:
        """``path``, once its bytes are proven to hash to the logged ``sha256``; else a refusal (never served or compared)."""
        try:
            info = path.stat()
        except FileNotFoundError:
            raise Refused("missing", f"{path.name} is gone from the requester's disk") from None
        actual = self._verified.get((path, info.st_ino, info.st_size, info.st_mtime_ns))
        if actual is None:
            actual = await trio.to_thread.run_sync(_sha256_of, path)
            self._remember_hash(path, actual, info)
        if actual != sha256:
            log.error("%s hashes to %s, the log says %s: not served", path, actual, sha256)
            raise Refused("corrupt", f"the stored {path.name} is not the file the log accepted")
        return path

    async def open_get(self, peer: Peer, header: FileHeader) -> Path:
        job = header.job
        if not isinstance(job, int) or job not in self.jobs:
            raise Refused("unknown-job", f"no job {job!r} here")
        if header.kind == "blend":
            self._friends_of(peer, job)
            accepted = self.jobs[job]
            if accepted.tree_main and header.sha256 and header.sha256 != accepted.blend_sha256:
                if header.sha256 not in self._tree_files(job):  # a file of the job's tree, and nothing else
                    raise Refused("not-in-tree", f"no file {header.sha256} in job {job}'s tree")
                return await self._checked(self._tree_file(job, header.sha256), header.sha256)
            return await self._checked(self._job_dir(job) / "job.blend", accepted.blend_sha256)
        if header.kind == "frame":
            self._own_job(peer, job)
            final = core.final_copy(self.state, job, header.frame)
            if final is None:
                raise Refused("not-final", f"frame {header.frame} of job {job} is not final yet")
            return await self._checked(self.copies[(job, final.sha256)], final.sha256)
        raise Refused("unsupported", f"no {header.kind} files are served")

    # ------------------------------------------------------ for the dashboard
    # Read-only views for frender.apps.web, from the folded state.

    def progress_of(self, job: int) -> msg.ProgressReply:
        return self._progress(self.jobs[job])

    def evictions_of(self, job: int) -> dict[str, core.Evidence]:
        return core.evictions(self.state, job)

    def points_of(self, job: int) -> tuple[int, int]:
        """(escrowed, earned): M + s per friend granted; final frames and paid checks of friends not evicted."""
        return core.points(self.state, job)

    def final_path(self, job: int, frame: int) -> Path | None:
        """The stored copy of a final frame; None while it is not final."""
        final = core.final_copy(self.state, job, frame)
        return None if final is None else self.copies[(job, final.sha256)]

    def job_dir(self, job: int) -> Path:
        return self._job_dir(job)

    async def changed(self) -> None:
        """Return at the next change of state."""
        await self._changed.wait()

    # --------------------------------------------------------- the master

    async def _ask_master(self, request: msg.Asks[R], *, retry: bool = True) -> R:
        """One call to the master over the link; with ``retry``, until it answers (it may be restarting), backing off.

        A refusal is the master's answer and is raised as Refused, except
        "internal" (the master failed and restarts from its log), which is
        retried like a lost link.
        """
        failures = 0
        while True:
            try:
                with trio.fail_after(30):
                    reply = await self.master_link.call(request)
                self.master_problem = ""
                return reply
            except RemoteError as exc:
                if not retry or exc.code not in _TRANSIENT:
                    raise Refused(exc.code, exc.reason) from None
                why = f"{exc.code}: {exc.reason}"
            except (PeerGone, OSError, trio.TooSlowError) as exc:
                if not retry:
                    raise Refused("master-unreachable", f"the master does not answer: {exc}") from None
                why = str(exc) or type(exc).__name__
            failures += 1
            delay = self._backoff(failures)
            log.warning("master %s unreachable (%s); retrying in %.1f s", self.master, why, delay)
            self.master_problem = f"the master does not answer ({why}); retrying every {delay:.0f} s, the job goes on meanwhile"
            self._changed.set()
            self._changed = trio.Event()
            await trio.sleep(delay)

    # ------------------------------------------------------- reactions

    async def react_forever(self, nursery: trio.Nursery) -> None:
        """Start a worker for every reaction owed (``owed``), now and whenever more are owed."""
        workers: dict[str, Callable[[Any], Awaitable[None]]] = {
            "comparisons": self._compare,
            "own_renders": self._own_render,
            "more_friends": self._more_friends,
            "reports": self._report,
            "openings": self._release_opening,
        }
        while True:
            self.wake = trio.Event()
            owed = self.owed
            for kind, worker in workers.items():
                for key, item in getattr(owed, kind).items():
                    if kind != "openings" or key not in self._opening_now:
                        self._start(nursery, kind, key, worker, item)
            await self.wake.wait()

    def _owes(self, kind: str, key: object) -> object | None:
        """The reaction of ``kind`` owed under ``key`` now, or None."""
        owed: dict[Any, object] = getattr(self.owed, kind)
        return owed.get(key)

    def _start(self, nursery: trio.Nursery, kind: str, key: object, worker: Callable[[Any], Awaitable[None]], item: object) -> None:
        """Run ``worker(item)`` unless it runs already; one that ends with its item still owed failed:
        its slot is held through a backoff, so a failing reaction is retried slowly, never in a loop."""
        slot = (kind, key)
        if slot in self._in_flight:
            return
        self._in_flight.add(slot)

        async def run() -> None:
            try:
                await worker(item)
                if self._owes(kind, key) == item:
                    failures = self._failures[slot] = self._failures.get(slot, 0) + 1
                    await trio.sleep(self._backoff(failures))
                else:
                    self._failures.pop(slot, None)
            finally:
                self._in_flight.discard(slot)
                self.wake.set()

        nursery.start_soon(run)

    async def _settle(self, kind: str, key: object, command: object, *more: object) -> None:
        """Apply a reaction's result. The core refuses a stale one (its check moved on meanwhile):
        that reaction is no longer owed here (after a restart it may run once more, and is refused again)."""
        try:
            await self.apply(command, *more)
        except Refused as exc:
            log.info("job %d: %s not applied: %s", command.job, type(command).__name__, exc)  # type: ignore[attr-defined]
            self._dropped.add((kind, key))

    async def _compare(self, event: core.OwedComparison) -> None:
        accepted = self.jobs[event.job]
        try:  # never compare a copy that is not, byte for byte, the one the log accepted
            a = await self._checked(self.copies[(event.job, event.a_sha256)], event.a_sha256)
            b = await self._checked(self.copies[(event.job, event.b_sha256)], event.b_sha256)
        except Refused as exc:  # our own disk, not a friend, is at fault: owed still, retried with backoff
            log.error("job %d: check %d not compared: %s", event.job, event.check, exc.reason)
            return
        check = core.check_of(self.state, event.job, event.check)
        crop = _crop(check.window if check is not None else None, accepted)
        try:
            result = await trio.to_thread.run_sync(lambda: _compare_copies(a, b, event.against, crop, accepted))
            verdict, figures = result.verdict, (result.fraction_off, result.max_diff, result.psnr)
        except blender.BadImage:  # stored copies were decoded on arrival; a bad one now is a disagreement
            verdict, figures = "disagree", (1.0, 255, 0.0)
        key = (event.job, event.check, event.against)
        if self._owes("comparisons", key) != event:
            return  # voided or superseded meanwhile
        await self._settle(
            "comparisons",
            key,
            core.RecordComparison(
                job=event.job,
                check=event.check,
                against=event.against,
                a_sha256=event.a_sha256,
                b_sha256=event.b_sha256,
                verdict=verdict,
                fraction_off=figures[0],
                max_diff=figures[1],
                psnr=min(figures[2], 99.0),
                entropy=self._entropy(),
                now=self._now(),
            )
        )

    async def _own_render(self, event: core.OwedRender) -> None:
        """Render one frame with our own Blender, for a check or an arbitration."""
        job_dir = self._job_dir(event.job)
        work = job_dir / f"own-{event.check}"
        async with self._own_render_lock:  # one render at a time: the requester's CPU is shared
            work.mkdir(parents=True, exist_ok=True)
            blend = work / "job.blend"
            if self.jobs[event.job].tree_main:
                manifest = pack.read_manifest((job_dir / "job.blend").read_bytes())
                source = functools.partial(self._tree_file, event.job)
                blend = await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, work / "tree", source, link=True))
            elif not blend.exists():
                os.link(job_dir / "job.blend", blend)
            try:
                check = core.check_of(self.state, event.job, event.check)
                accepted = self.jobs[event.job]
                crop = _crop(check.window if check is not None else None, accepted)
                backend = await self.runtimes.for_version(accepted.profile.blender_version)
                frames = await blender.render(
                    backend, blend, work, [event.frame], threads=None, limits=self.settings.render_limits, window=None if crop is None else crop[1]
                )
            except blender.BlenderError as exc:
                log.error("job %d: our own render of frame %d failed: %s", event.job, event.frame, exc)
                return  # owed still: tried again after a backoff
        target = self._own_path(event.job, event.check)
        os.replace(frames[0].path, target)
        sha = (await file_header(target, kind="frame", job=event.job, frame=event.frame)).sha256
        key = (event.job, event.check)
        if self._owes("own_renders", key) == event:
            await self._settle(
                "own_renders", key, core.RecordOwnRender(job=event.job, check=event.check, sha256=sha, entropy=self._entropy(), now=self._now())
            )
        shutil.rmtree(work, ignore_errors=True)

    async def _release_opening(self, event: JobOpening) -> None:
        """Close, unpaid, whatever job the master opened for an opening that never became a job here."""
        head = self.log.head
        try:
            released = await self._ask_master(msg.ReleaseOpening(opening=event.opening, head_seq=head.seq, head_hash=head.hash))
        except Refused as exc:  # owed still: asked again after a backoff
            log.error("the opening for %s's job was not released: %s", event.submitter, exc)
            return
        await self.apply(JobOpeningReleased(opening=event.opening, job=released.job))
        if released.job is not None:
            log.warning("job %d was opened at the master but never accepted here: closed, its points refunded", released.job)

    async def _more_friends(self, event: core.OwedFriends) -> None:
        accepted = self.jobs[event.job]
        failures = 0
        while self._owes("more_friends", event.job) is not None:
            try:
                granted = await self._ask_master(
                    msg.AskFriends(
                        job=event.job,
                        submitter=accepted.submitter,
                        submitter_key=accepted.submitter_key,
                        frames=core.frame_count(self.state, event.job),
                        want=event.count,
                        profile=accepted.profile,
                        exclude=event.exclude,
                        blend_sha256=accepted.blend_sha256,
                        address=str(self.address),
                    )
                )
            except Refused as exc:
                failures += 1
                delay = self._backoff(failures)
                log.info("job %d: no more friends yet (%s); asking again in %.1f s", event.job, exc.reason, delay)
                await trio.sleep(delay)
                continue
            await self._settle(
                "more_friends",
                event.job,
                _joining(granted, entropy=self._entropy(), now=self._now()),
                _keys(granted),
            )
            return

    async def grow_forever(self) -> None:
        """Jobs granted fewer friends than they asked for grow as friends free up (asked every ``grow_every`` s)."""
        while True:
            await trio.sleep(self.settings.grow_every)
            for number in core.running_jobs(self.state):
                short = self._short_of(number)
                if short > 0 and number not in self.owed.more_friends:
                    await self._grow(number, short)

    def _short_of(self, job: int) -> int:
        """Friends the job asked for and does not have (evicted and gone ones count as missing)."""
        wants = self.wants.get(job)
        if wants is None:
            return 0
        return wants.friends - sum(1 for p in core.progress(self.state, job) if p.status == "active")

    async def _grow(self, job: int, short: int) -> None:
        accepted = self.jobs[job]
        try:
            granted = await self._ask_master(
                msg.AskFriends(
                    job=job,
                    submitter=accepted.submitter,
                    submitter_key=accepted.submitter_key,
                    frames=core.frame_count(self.state, job),
                    want=short,
                    profile=accepted.profile,
                    exclude=tuple(core.evictions(self.state, job)),
                    blend_sha256=accepted.blend_sha256,
                    address=str(self.address),
                ),
                retry=False,
            )
        except Refused as exc:  # none free yet (or the balance is spent): asked again later
            log.debug("job %d: still %d friends short (%s)", job, short, exc.reason)
            self.short_why[job] = exc.reason  # shown in the progress while the job has no friend
            return
        self.short_why.pop(job, None)
        if core.is_finished(self.state, job) or not granted.friends:
            return
        try:
            await self.apply(
                _joining(granted, entropy=self._entropy(), now=self._now()),
                _keys(granted),
            )
        except Refused as exc:  # finished or cancelled meanwhile: the closing report releases them at the master
            log.info("job %d: friends granted too late: %s", job, exc)
            return
        log.info("job %d grew by %d friends (%s)", job, len(granted.friends), ", ".join(f.friend for f in granted.friends))

    async def _report(self, event: core.OwedReport) -> None:
        head = self.log.head
        report = event.report
        request = msg.Report(
            job=event.job,
            payouts=dict(report.payouts),
            check_outcomes=dict(report.check_outcomes),
            evicted=tuple(report.evictions),
            own_outcomes=_own_outcomes(core.checks(self.state, event.job)),
            evidence={friend: _evidence(e, _window_of_check(self.state, event.job, e.check)) for friend, e in report.evictions.items()},
            head_seq=head.seq,
            head_hash=head.hash,
        )
        try:
            await self._ask_master(request)
        except Refused as exc:
            if exc.code != "closed":  # "closed": an earlier attempt landed before we crashed
                # For good: asking again gets the same answer. Logged once, shown to the client.
                log.error("job %d: the master refused the report: %s", event.job, exc)
                await self.apply(ReportRefused(job=event.job, code=exc.code, reason=exc.reason))
                return
        await self.apply(ReportDelivered(job=event.job, head_seq=head.seq, head_hash=head.hash))
        log.info("job %d %s and reported", event.job, event.ended)

    async def tick_forever(self) -> None:
        """Deadlines, and friends that went silent: the core learns of both here."""
        started = trio.current_time()
        while True:
            await trio.sleep(self.settings.tick)
            for number in core.running_jobs(self.state):
                await self.apply(core.Tick(job=number, entropy=self._entropy(), now=self._now()))
                for friend in core.silent_candidates(self.state, number):
                    silent = trio.current_time() - self._contact.get((number, friend), started)
                    if silent > self.settings.friend_silence:
                        log.info("job %d: %s silent for %.0f s: gone", number, friend, silent)
                        await self.apply(core.DropFriend(job=number, friend=friend, entropy=self._entropy(), now=self._now()))


def _evolve_core(state: core.Requester, event: object) -> None:
    """The core's evolve, for the core's events (the shell's own pass by)."""
    if type(event) in core.EVENTS:
        core.evolve(state, event)


def _step(item: object) -> Step[core.Requester]:
    """A core command decided on the draft, or a shell event that passes through as it is."""
    if type(item) in core.COMMANDS:
        return functools.partial(core.decide, command=item)
    return lambda draft: [item]


def _joining(granted: msg.FriendsGranted, *, entropy: str, now: float) -> core.AddFriends:
    """The one way granted friends join a job: with the standing the master gave them (reputation, clean run).

    Every grant (a new job, more friends after evictions, a job that grows) goes through here, so no path
    can treat a trusted friend as a stranger, or thin checks for nobody.
    """
    friends = tuple(
        core.GrantedFriend(friend=f.friend, owner=f.user, clean_run=max(0, f.clean_run), reputation=max(0, f.reputation)) for f in granted.friends
    )
    return core.AddFriends(job=granted.job, friends=friends, entropy=entropy, now=now)


def _keys(granted: msg.FriendsGranted) -> FriendKeys:
    """The key each granted friend proves, logged with the grant."""
    return FriendKeys(job=granted.job, keys={f.friend: f.key for f in granted.friends})


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _crop(window: core.CropWindow | None, accepted: JobAccepted) -> tuple[blender.Window, blender.Window] | None:
    """A crop check's secret window in pixels and the box rendered for it (padded and aligned for a denoised
    file); None: whole frames."""
    if window is None:
        return None
    width, height = accepted.width, accepted.height
    left, top, w, h = window.pixels(width, height)
    box = blender.Window(left=left, top=top, width=w, height=h)
    return box, box.padded(accepted.crop_padding, width, height, align=accepted.crop_alignment)


def _compare_copies(a: Path, b: Path, against: str, crop: tuple[blender.Window, blender.Window] | None, accepted: JobAccepted) -> blender.Comparison:
    """Compare two stored copies: whole frames in the job's own format, or a crop check's window (8-bit PNG jobs:
    the subject's copy is its whole frame, the verifier's and the requester's are the padded box, compared in its centre)."""
    width, height = accepted.width, accepted.height
    if crop is None:
        return blender.compare_output(a, b, accepted.output, width=width, height=height)
    box, rendered = crop
    pad, align = accepted.crop_padding, accepted.crop_alignment
    if against == "pair":  # a: the subject's frame, b: the verifier's (or our own) crop
        return blender.compare_window(a, b, box, width=width, height=height, pad=pad, align=align)
    if against == "subject":  # a: our own crop, b: the subject's frame
        return blender.compare_window(b, a, box, width=width, height=height, pad=pad, align=align)
    one, two = (blender.decode_png(p, width=rendered.width, height=rendered.height) for p in (a, b))  # two crops
    return blender.compare_pixels(box.of(one, rendered), box.of(two, rendered))


def _own_outcomes(checks: tuple[core.Check, ...]) -> dict[str, tuple[bool, ...]]:
    """Per friend, passed? for every check the requester's own render settled: its own checks and arbitrations.

    Only these earn reputation at the master: no friend can be the party that rendered them.
    """
    outcomes: dict[str, list[bool]] = {}
    for c in checks:
        if c.own and c.verifier is None and c.outcome in ("agreed", "subject_wrong"):
            outcomes.setdefault(c.subject, []).append(c.outcome == "agreed")
        elif c.arbitration_sha256 and c.outcome == "agreed":  # a spot check: our own render agreed with both
            for friend in (c.subject, c.verifier):
                if friend is not None:
                    outcomes.setdefault(friend, []).append(True)
        elif c.arbitration_sha256 and c.outcome in ("subject_wrong", "verifier_wrong", "both_wrong"):
            outcomes.setdefault(c.subject, []).append(c.outcome == "verifier_wrong")
            if c.verifier is not None:
                outcomes[c.verifier] = outcomes.get(c.verifier, []) + [c.outcome == "subject_wrong"]
    return {friend: tuple(passed) for friend, passed in sorted(outcomes.items())}


def _window_of_check(state: core.Requester, job: int, check: int) -> core.CropWindow | None:
    found = core.check_of(state, job, check)
    return None if found is None else found.window


def _evidence(e: core.Evidence, window: core.CropWindow | None = None) -> str:
    """An eviction's evidence in words, for the master's ledger (bounded like every message)."""
    figures = e.vs_subject or e.pair
    text = (
        f"check {e.check}, frame {e.frame}: {e.subject}'s copy {e.subject_sha256[:16]}"
        f" vs {e.verifier or 'the requester'}'s {e.verifier_sha256[:16]}, arbitration {e.arbitration_sha256[:16]}"
    )
    if window is not None:
        text += f"; crop window {window.x},{window.y} {window.w}x{window.h} of {core.events.WINDOW_GRID}"
    if figures is not None:
        text += f"; {figures.fraction_off:.2%} of pixels off, max diff {figures.max_diff}/255, PSNR {figures.psnr:.1f} dB"
    return text[:1024]


async def run_requester(
    *,
    master: Address,
    host: str,
    port: int,
    db: Path,
    home: Path,
    backend: blender.Backend | blender.Runtimes,
    settings: RequesterSettings = RequesterSettings(),
    limits: Limits = Limits(),
    announce=print,
    web: tuple[str, int] | None = None,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Replay ``db``, listen, and serve clients and friends until cancelled; with ``web``, the dashboard too."""
    from frender.apps.trust_check import say_if_untrusted

    identity = Identity.load_or_create(home)
    log_ = SqliteLog(db)
    try:
        async with trio.open_nursery() as nursery:
            placeholder = Address(host=host, port=port or 1, fingerprint=identity.fingerprint)
            node = RequesterNode(
                identity=identity, home=home, log=log_, master=master, address=placeholder, backend=backend, settings=settings, limits=limits
            )
            bound = await nursery.start(functools.partial(serve, identity, host, port, node, limits=limits))
            node.address = Address(host=host, port=bound, fingerprint=identity.fingerprint)
            announce(f"requester listening at {node.address} (key {identity.fingerprint})")
            nursery.start_soon(say_if_untrusted, master, identity, announce)
            nursery.start_soon(node.stop_on_log_failure)
            nursery.start_soon(node.react_forever, nursery)
            nursery.start_soon(node.tick_forever)
            nursery.start_soon(node.grow_forever)
            if web is not None:
                from frender.apps.web import serve_requester_web

                url = await nursery.start(serve_requester_web, node, *web)
                announce(f"requester dashboard at {url}/")
            task_status.started(node.address)
    finally:
        log_.close()
