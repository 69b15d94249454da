"""The requester process: hosts clients' jobs, hands out work, verifies and pays.

The shell around ``frender.core.job``. Inputs become commands (with ``now``
and fresh ``entropy`` from here), durable events are committed to
``requester.db`` before anyone is answered, the state evolves, and a few
events ask this shell to act:

- ``ComparisonRequested``  -> compare two stored copies (a thread) -> RecordComparison
- ``OwnRenderRequested``   -> render the frame with our own Blender -> RecordOwnRender
- ``MoreFriendsWanted``    -> ask the master for more friends -> AddFriends
- ``JobFinished``          -> report to the master until it acknowledges

What is still owed after a restart is derived from the folded log (``Owed``),
so a crash between an event and its reaction only delays the reaction.

Files on disk are named from ids only: ``jobs/{job}/job.blend``,
``jobs/{job}/copies/{task}-{frame}.{ext}``, ``jobs/{job}/own/{check}.{ext}`` (ext: the file's output format),
``uploads/{sha256}.blend``. A frame is on disk (fsynced, renamed) before the
event that accepts it is committed.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import secrets
import time
from pathlib import Path
from typing import ClassVar

import attrs
import trio
from attrs import define, field, frozen

from frender import blender, codec
from frender.apps import artist, pack
from frender.apps import messages as msg
from frender.core import job as core
from frender.core._decider import Rejected, is_durable
from frender.core.profile import RenderProfile
from frender.store import SqliteLog, replay
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
    connect,
    file_header,
    serve,
)

__all__ = ["JobAccepted", "FriendKeys", "ReportDelivered", "RequesterNode", "RequesterSettings", "run_requester"]

log = logging.getLogger("frender.requester")

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
    # The file's own output format: frames are stored, checked and compared in it.
    file_format: str = "PNG"
    color_depth: str = "8"
    color_mode: str = "RGBA"
    # A packed job tree: blend_sha256 names its manifest, this its main .blend ("" for a lone .blend).
    tree_main: str = ""

    @property
    def output(self) -> blender.OutputFormat:
        return blender.OutputFormat(file_format=self.file_format, color_depth=self.color_depth, color_mode=self.color_mode)


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


SHELL_EVENTS = (JobAccepted, FriendKeys, ReportDelivered)
codec.register(*SHELL_EVENTS)


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
    master_retry: float = 1.0  # seconds between attempts to reach the master
    render_limits: blender.Limits = blender.Limits(wall_seconds=600.0)


@define
class Owed:
    """Reactions the folded log still owes; rebuilt by replay, so none is lost to a crash."""

    comparisons: dict[tuple[int, int, str], core.ComparisonRequested] = field(factory=dict)
    own_renders: dict[tuple[int, int], core.OwnRenderRequested] = field(factory=dict)
    more_friends: dict[int, core.MoreFriendsWanted] = field(factory=dict)
    reports: dict[int, core.JobFinished] = field(factory=dict)

    def see(self, event: object) -> None:
        match event:
            case core.ComparisonRequested(job=j, check=c, against=a):
                self.comparisons[(j, c, a)] = event
            case core.ComparisonMade(job=j, check=c, against=a):
                self.comparisons.pop((j, c, a), None)
            case core.OwnRenderRequested(job=j, check=c):
                self.own_renders[(j, c)] = event
            case core.OwnRenderReceived(job=j, check=c):
                self.own_renders.pop((j, c), None)
            case core.CheckResolved(job=j, check=c):  # a void check needs nothing more
                self.own_renders.pop((j, c), None)
                for key in [k for k in self.comparisons if k[:2] == (j, c)]:
                    del self.comparisons[key]
            case core.MoreFriendsWanted(job=j):
                self.more_friends[j] = event
            case core.FriendsJoined(job=j):
                self.more_friends.pop(j, None)
            case core.JobFinished(job=j):
                self.reports[j] = event
                self.more_friends.pop(j, None)
            case ReportDelivered(job=j):
                self.reports.pop(j, None)


class RequesterNode(Handler):
    """The requester's jobs, their files, and its answers to clients and friends."""

    def __init__(
        self,
        *,
        identity: Identity,
        home: Path,
        log: SqliteLog,
        master: Address,
        address: Address,
        backend: blender.Backend,
        settings: RequesterSettings = RequesterSettings(),
        limits: Limits = Limits(),
    ) -> None:
        self.identity = identity
        self.home = home
        self.log = log
        self.master = master
        self.address = address
        self.backend = backend
        self.settings = settings
        self.limits = limits
        self.state = core.Requester()
        self.jobs: dict[int, JobAccepted] = {}
        self.keys: dict[int, dict[str, str]] = {}  # job -> friend -> key
        self.copies: dict[tuple[int, str], Path] = {}  # (job, sha256) -> a stored copy
        self.owed = Owed()
        self.wake = trio.Event()  # set when new reactions are owed
        self._changed = trio.Event()  # set (and replaced) whenever the state changes
        self._contact: dict[tuple[int, str], float] = {}  # soft: (job, friend) -> last time we heard from it
        replay(log, self._evolve)  # verifies the chain as it folds
        self._in_flight: set[object] = set()
        self._own_render_lock = trio.Lock()
        self._trees: dict[int, frozenset[str]] = {}  # tree job -> the sha256 of its files
        self._master_lock = trio.Lock()

    # ------------------------------------------------------------ the core

    def _evolve(self, event: object) -> None:
        match event:
            case JobAccepted(job=j):
                self.jobs[j] = event
            case FriendKeys(job=j, keys=keys):
                self.keys.setdefault(j, {}).update(keys)
            case ReportDelivered():
                pass
            case core.CopyReceived(job=j, task=t, frame=f, sha256=sha):
                self.copies.setdefault((j, sha), self._copy_path(j, t, f))
                core.evolve(self.state, event)
            case core.OwnRenderReceived(job=j, check=c, sha256=sha):
                self.copies.setdefault((j, sha), self._own_path(j, c))
                core.evolve(self.state, event)
            case core.FriendsJoined(job=j, friends=granted):
                for g in granted:  # silence is counted from joining (or from this process's start, on replay)
                    self._heard_from(j, g.friend)
                core.evolve(self.state, event)
            case _:
                core.evolve(self.state, event)
        self.owed.see(event)

    def apply(self, *commands_or_events: object) -> list[object]:
        """Decide each core command in turn (shell events pass through), then commit them all at once.

        Each decision sees the events of the ones before it, so the state is
        evolved as we go; nothing awaits in here, so no peer sees the state
        before the commit, and a failed commit ends the process (replay is
        the truth). Only the first command may be rejected.
        """
        decided: list[object] = []
        for item in commands_or_events:
            if type(item) in core.COMMANDS:
                try:
                    batch = core.decide(self.state, item)
                except Rejected as rejection:
                    if decided:
                        raise  # a later command refused after earlier ones evolved: a bug, not a peer's fault
                    raise Refused(rejection.code, rejection.reason) from None
            else:
                batch = [item]
            for event in batch:
                self._evolve(event)
            decided.extend(batch)
        self.log.append([e for e in decided if is_durable(e)])
        if decided:
            self._changed.set()
            self._changed = trio.Event()
        if any(isinstance(e, (core.ComparisonRequested, core.OwnRenderRequested, core.MoreFriendsWanted, core.JobFinished)) for e in decided):
            self.wake.set()
        return decided

    def _now(self) -> float:
        return time.time()

    def _heard_from(self, job: int, friend: str) -> None:
        self._contact[(job, friend)] = time.monotonic()

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
        return self.home / "uploads" / f"{sha256}.blend"

    # ------------------------------------------------------------ the RPC

    async def call(self, peer: Peer, request: object) -> object:
        match request:
            case msg.Submit():
                return await self._submit(peer, request)
            case msg.HaveUploads(sha256s=wanted):
                if len(wanted) > pack.MAX_FILES + 1 or not all(isinstance(s, str) and re.fullmatch(r"[0-9a-f]{64}", s) for s in wanted):
                    raise Refused("bad-request", f"ask about at most {pack.MAX_FILES + 1} sha256 digests")
                return msg.UploadsWanted(missing=tuple(s for s in wanted if not self._upload_path(s).is_file()))
            case msg.Progress(job=j, final_known=final, delivered_known=delivered):
                return await self._progress_after(self._own_job(peer, j), final, delivered)
            case msg.WantWork(assignment=signed, keeping=keeping):
                return await self._want_work(peer, signed, keeping)
            case msg.GiveBack(assignment=signed, task=task):
                assignment = self._check(peer, signed)
                self.apply(core.ReturnTask(job=assignment.job, friend=assignment.friend, task=task, entropy=self._entropy(), now=self._now()))
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
        blend_path = self._upload_path(submit.blend_sha256)
        if not blend_path.is_file():
            raise Refused("no-upload", "upload the .blend first (put kind 'upload' named by its sha256)")
        if not 1 <= submit.friends <= self.settings.max_friends:
            raise Refused("bad-job", f"ask for 1 to {self.settings.max_friends} friends")
        manifest = None
        if submit.tree:
            manifest, info = await self._inspect_tree(submit.blend_sha256)
        else:
            try:
                info = await blender.inspect(self.backend, blend_path, limits=self.settings.render_limits)
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
        profile = await blender.probe(self.backend)
        settings = attrs.evolve(self.settings.job, checks_per_friend=submit.checks_per_friend)
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
            ),
            retry=False,
        )
        job_dir = self._job_dir(granted.job)
        (job_dir / "copies").mkdir(parents=True, exist_ok=True)
        (job_dir / "own").mkdir(exist_ok=True)
        if not (job_dir / "job.blend").exists():
            os.link(blend_path, job_dir / "job.blend")  # for a tree, its manifest
        if manifest is not None:
            await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, job_dir / "tree", self._upload_path, link=True))
        width, height = info.resolution
        now = self._now()
        self.apply(
            JobAccepted(
                job=granted.job,
                submitter=submit.user,
                submitter_key=peer.fingerprint,
                blend_sha256=submit.blend_sha256,
                width=width,
                height=height,
                profile=profile,
                file_format=asked.output.file_format,
                color_depth=asked.output.color_depth,
                color_mode=asked.output.color_mode,
                tree_main=manifest.main if manifest is not None else "",
            ),
            FriendKeys(job=granted.job, keys={f.friend: f.key for f in granted.friends}),
            core.StartJob(
                job=granted.job,
                frames=tuple(frames),
                settings=settings,
                checks_escrowed=settings.checks_to_escrow(len(frames), submit.friends),
                now=now,
            ),
            core.AddFriends(
                job=granted.job,
                friends=tuple(core.GrantedFriend(friend=f.friend, owner=f.user) for f in granted.friends),
                entropy=self._entropy(),
                now=now,
            ),
        )
        log.info("job %d: %d frames for %s on %d friends", granted.job, len(frames), submit.user, len(granted.friends))
        return msg.Submitted(
            job=granted.job, frames=tuple(frames), width=width, height=height, name=asked.name, extension=asked.extension, output=asked.output.describe()
        )

    async def _progress_after(self, accepted: JobAccepted, final: int, delivered: int) -> msg.ProgressReply:
        """The progress once more than ``final`` frames are final, the delivered count is not
        ``delivered`` (when that is >= 0), or the job finished (held at most hold_progress)."""
        j = self.state.jobs[accepted.job]

        def unchanged() -> bool:
            return (
                0 <= final
                and len(j.final) <= final
                and (delivered < 0 or len(j.copy) + len(j.final) == delivered)
                and j.phase != "finished"
            )

        with trio.move_on_after(self.settings.hold_progress):
            while unchanged():
                await self._changed.wait()
        return self._progress(accepted)

    def _progress(self, accepted: JobAccepted) -> msg.ProgressReply:
        j = self.state.jobs[accepted.job]
        lines = core.progress(self.state, accepted.job)
        checks = sum(1 for c in j.checks.values() if c.state == "resolved")
        disagreements = sum(1 for c in j.checks.values() if c.outcome not in ("", "agreed", "void"))
        problem = ""
        if j.wanted and not any(rec.status == "active" for rec in j.friends.values()):
            problem = "every friend of this job is gone; waiting for the master to grant more"
        return msg.ProgressReply(
            job=accepted.job,
            total=len(j.frames),
            delivered=len(j.copy) + len(j.final),
            final=tuple(j.final),
            friends=tuple(
                msg.FriendLine(friend=p.friend, delivered=p.delivered, final=p.final, checks=p.checks_paid, evicted=p.evicted) for p in lines
            ),
            checks=checks,
            disagreements=disagreements,
            evictions=tuple(j.evictions),
            finished=j.phase == "finished",
            problem=problem,
        )

    async def _inspect_tree(self, manifest_sha256: str) -> tuple[pack.Manifest, blender.BlendInfo]:
        """Check an uploaded job tree, lay it out, and inspect and guard every .blend in it.

        The main file's facts stand for the job; every library's refusals and
        missing files are added to them, named by the library's path.
        """
        try:
            manifest = pack.read_manifest(self._upload_path(manifest_sha256).read_bytes())
        except (OSError, ValueError) as exc:
            raise Refused("bad-tree", f"the job tree's manifest is unusable: {exc}") from None
        absent = [f.path for f in manifest.files if not self._upload_path(f.sha256).is_file()]
        if absent:
            raise Refused("no-upload", "upload these files of the tree first: " + ", ".join(absent[:8]))
        root = self.home / "trees" / manifest_sha256
        await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, root, self._upload_path, link=True))
        infos = []
        for path in manifest.blends:
            try:
                infos.append(await blender.inspect(self.backend, root / path, limits=self.settings.render_limits, job_dir=root))
            except blender.BlenderError as exc:
                raise Refused("bad-blend", f"{path}: {str(exc).splitlines()[0]}") from None
        main = infos[0]
        refusals = list(main.refusals)
        missing = list(main.missing)
        for path, info in zip(manifest.blends[1:], infos[1:]):
            refusals += [f"library {path}: {reason}" for reason in info.refusals]
            missing += [m for m in info.missing if m not in missing]
        return manifest, attrs.evolve(main, refusals=tuple(refusals), missing=tuple(missing))

    def _tree_files(self, job: int) -> frozenset[str]:
        """The sha256 of every file in a tree job (read from its manifest once)."""
        if job not in self._trees:
            self._trees[job] = frozenset(f.sha256 for f in pack.read_manifest((self._job_dir(job) / "job.blend").read_bytes()).files)
        return self._trees[job]

    async def _want_work(self, peer: Peer, signed, keeping: tuple[int, ...]) -> msg.Work | msg.NoWork:
        """Work for the friend; with none yet, hold the call until some appears (no polling gap)."""
        assignment = self._check(peer, signed)
        job, friend = assignment.job, assignment.friend
        if self.keys.get(job, {}).get(friend) != peer.fingerprint:
            raise AssignmentRefused(f"{friend} was not granted to job {job} here")
        with trio.move_on_after(self.settings.hold_work):
            while True:
                self._heard_from(job, friend)
                offer = self._offer(job, friend, keeping)
                if offer is not None:
                    return offer
                await self._changed.wait()
        return msg.NoWork(retry_after=0.1)

    def _offer(self, job: int, friend: str, keeping: tuple[int, ...]) -> msg.Work | msg.NoWork | None:
        """A task for ``friend``, the news that its job is over, or None: nothing yet."""
        if self.state.jobs[job].phase == "finished":
            return msg.NoWork(over=True, why="the job is finished")
        now = self._now()
        decided = self.apply(core.AskForTask(job=job, friend=friend, keeping=keeping, entropy=self._entropy(), now=now))
        for event in decided:
            if isinstance(event, core.TaskAssigned) and event.friend == friend:
                accepted = self.jobs[job]
                # Rule 4 of the core: the friend learns task, frames and deadline only.
                return msg.Work(
                    job=job,
                    task=event.task,
                    frames=event.frames,
                    deadline=max(event.deadline - now, 1.0),
                    width=accepted.width,
                    height=accepted.height,
                )
        outlook = core.outlook(self.state, job, friend)
        if outlook in ("done", "evicted"):
            return msg.NoWork(over=True, why=outlook)
        return None

    # ------------------------------------------------------------ the files

    def _friend_of(self, peer: Peer, job: int) -> str:
        for friend, key in self.keys.get(job, {}).items():
            if key == peer.fingerprint:
                return friend
        raise Refused("not-assigned", f"your key is not a friend of job {job} here")

    def _live_task(self, job: int, friend: str, frame: int) -> int:
        j = self.state.jobs[job]
        for task in sorted(j.live_of.get(friend, ())):
            if frame in j.live.get(task, ()):
                return task
        raise Refused("not-yours", f"frame {frame} of job {job} is not in a task you hold")

    async def accept_put(self, peer: Peer, header: FileHeader) -> Path:
        if header.kind == "upload":
            if header.job != header.sha256:
                raise Refused("bad-upload", "an upload is named by its own sha256")
            path = self._upload_path(header.sha256)
            path.parent.mkdir(parents=True, exist_ok=True)
            return path
        if header.kind == "frame" and isinstance(header.job, int) and header.job in self.jobs:
            friend = self._friend_of(peer, header.job)
            self._heard_from(header.job, friend)
            task = self._live_task(header.job, friend, header.frame)
            return self._copy_path(header.job, task, header.frame)
        raise Refused("not-accepted", f"no {header.kind} is accepted for job {header.job!r}")

    async def put_done(self, peer: Peer, header: FileHeader, path: Path) -> object:
        if header.kind == "upload":
            return msg.Ok()
        job = header.job
        friend = self._friend_of(peer, job)
        task = int(path.name.split("-")[0])
        accepted = self.jobs[job]
        ok, reason = True, ""
        try:
            await trio.to_thread.run_sync(lambda: blender.decode_output(path, accepted.output, width=accepted.width, height=accepted.height))
        except blender.BadImage as exc:
            ok, reason = False, str(exc)
        self.apply(
            core.DeliverFrame(
                job=job, friend=friend, task=task, frame=header.frame, sha256=header.sha256, ok=ok, reason=reason, entropy=self._entropy(), now=self._now()
            )
        )
        return msg.FrameStored(frame=header.frame, ok=ok, reason=reason)

    async def open_get(self, peer: Peer, header: FileHeader) -> Path:
        job = header.job
        if not isinstance(job, int) or job not in self.jobs:
            raise Refused("unknown-job", f"no job {job!r} here")
        if header.kind == "blend":
            self._friend_of(peer, job)
            accepted = self.jobs[job]
            if accepted.tree_main and header.sha256 and header.sha256 != accepted.blend_sha256:
                if header.sha256 not in self._tree_files(job):  # a file of the job's tree, and nothing else
                    raise Refused("not-in-tree", f"no file {header.sha256} in job {job}'s tree")
                return self._upload_path(header.sha256)
            return self._job_dir(job) / "job.blend"
        if header.kind == "frame":
            self._own_job(peer, job)
            final = self.state.jobs[job].final.get(header.frame)
            if final is None:
                raise Refused("not-final", f"frame {header.frame} of job {job} is not final yet")
            return self.copies[(job, final.sha256)]
        raise Refused("unsupported", f"no {header.kind} files are served")

    # --------------------------------------------------------- the master

    async def _ask_master(self, request: object, *, retry: bool = True) -> object:
        """One call to the master; with ``retry``, until it answers (it may be restarting)."""
        while True:
            try:
                async with self._master_lock:
                    with trio.fail_after(30):
                        async with connect(self.master, self.identity, limits=self.limits) as session:
                            return await session.call(request)
            except RemoteError as exc:
                raise Refused(exc.code, exc.reason) from None
            except (PeerGone, OSError, trio.TooSlowError) as exc:
                if not retry:
                    raise Refused("master-unreachable", f"the master does not answer: {exc}") from None
                log.warning("master unreachable (%s); retrying", exc)
                await trio.sleep(self.settings.master_retry)

    # ------------------------------------------------------- reactions

    async def react_forever(self, nursery: trio.Nursery) -> None:
        """Start a worker for every reaction owed, now and whenever more are owed."""
        while True:
            self.wake = trio.Event()
            for key, event in list(self.owed.comparisons.items()):
                self._start(nursery, key, self._compare, event)
            for key, event in list(self.owed.own_renders.items()):
                self._start(nursery, key, self._own_render, event)
            for key, event in list(self.owed.more_friends.items()):
                self._start(nursery, ("more", key), self._more_friends, event)
            for key, event in list(self.owed.reports.items()):
                self._start(nursery, ("report", key), self._report, event)
            await self.wake.wait()

    def _start(self, nursery: trio.Nursery, key: object, worker, event: object) -> None:
        if key in self._in_flight:
            return
        self._in_flight.add(key)

        async def run() -> None:
            try:
                await worker(event)
            finally:
                self._in_flight.discard(key)
                self.wake.set()

        nursery.start_soon(run)

    def _settle(self, command: object, *more: object) -> None:
        """Apply a reaction's result; the core may refuse a stale one (its check moved on meanwhile)."""
        try:
            self.apply(command, *more)
        except Refused as exc:
            log.info("job %d: %s not applied: %s", command.job, type(command).__name__, exc)

    async def _compare(self, event: core.ComparisonRequested) -> None:
        accepted = self.jobs[event.job]
        a = self.copies[(event.job, event.a_sha256)]
        b = self.copies[(event.job, event.b_sha256)]
        try:
            result = await trio.to_thread.run_sync(lambda: blender.compare_output(a, b, accepted.output, width=accepted.width, height=accepted.height))
            verdict, figures = result.verdict, (result.fraction_off, result.max_diff, result.psnr)
        except blender.BadImage:  # stored copies were decoded on arrival; a bad one now is a disagreement
            verdict, figures = "disagree", (1.0, 255, 0.0)
        if self.owed.comparisons.get((event.job, event.check, event.against)) != event:
            return  # voided or superseded meanwhile
        self._settle(
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

    async def _own_render(self, event: core.OwnRenderRequested) -> None:
        """Render one frame with our own Blender, for a check or an arbitration."""
        job_dir = self._job_dir(event.job)
        work = job_dir / f"own-{event.check}"
        async with self._own_render_lock:  # one render at a time: the requester's CPU is shared
            work.mkdir(parents=True, exist_ok=True)
            blend = work / "job.blend"
            if self.jobs[event.job].tree_main:
                manifest = pack.read_manifest((job_dir / "job.blend").read_bytes())
                blend = await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, work / "tree", self._upload_path, link=True))
            elif not blend.exists():
                os.link(job_dir / "job.blend", blend)
            try:
                frames = await blender.render(self.backend, blend, work, [event.frame], threads=None, limits=self.settings.render_limits)
            except blender.BlenderError as exc:
                log.error("job %d: our own render of frame %d failed: %s", event.job, event.frame, exc)
                await trio.sleep(5)  # owed still; tried again
                return
        target = self._own_path(event.job, event.check)
        os.replace(frames[0].path, target)
        sha = (await file_header(target, kind="frame", job=event.job, frame=event.frame)).sha256
        if (event.job, event.check) in self.owed.own_renders:
            self._settle(core.RecordOwnRender(job=event.job, check=event.check, sha256=sha, entropy=self._entropy(), now=self._now()))
        shutil.rmtree(work, ignore_errors=True)

    async def _more_friends(self, event: core.MoreFriendsWanted) -> None:
        accepted = self.jobs[event.job]
        while event.job in self.owed.more_friends:
            try:
                granted = await self._ask_master(
                    msg.AskFriends(
                        job=event.job,
                        submitter=accepted.submitter,
                        submitter_key=accepted.submitter_key,
                        frames=len(self.state.jobs[event.job].frames),
                        want=event.count,
                        profile=accepted.profile,
                        exclude=event.exclude,
                        blend_sha256=accepted.blend_sha256,
                        address=str(self.address),
                    )
                )
            except Refused as exc:
                log.info("job %d: no more friends yet (%s)", event.job, exc.reason)
                await trio.sleep(self.settings.master_retry)
                continue
            self._settle(
                core.AddFriends(
                    job=event.job,
                    friends=tuple(core.GrantedFriend(friend=f.friend, owner=f.user) for f in granted.friends),
                    entropy=self._entropy(),
                    now=self._now(),
                ),
                FriendKeys(job=event.job, keys={f.friend: f.key for f in granted.friends}),
            )
            return

    async def _report(self, event: core.JobFinished) -> None:
        head = self.log.head
        report = event.report
        request = msg.Report(
            job=event.job,
            payouts=dict(report.payouts),
            check_outcomes=dict(report.check_outcomes),
            evicted=tuple(report.evictions),
            head_seq=head.seq,
            head_hash=head.hash,
        )
        try:
            await self._ask_master(request)
        except Refused as exc:
            if exc.code != "closed":  # "closed": an earlier attempt landed before we crashed
                log.error("job %d: the master refused the report: %s", event.job, exc)
                return
        self.apply(ReportDelivered(job=event.job, head_seq=head.seq, head_hash=head.hash))
        log.info("job %d finished and reported", event.job)

    async def tick_forever(self) -> None:
        """Deadlines, and friends that went silent: the core learns of both here."""
        started = time.monotonic()
        while True:
            await trio.sleep(self.settings.tick)
            for number, j in list(self.state.jobs.items()):
                if j.phase == "finished":
                    continue
                self.apply(core.Tick(job=number, entropy=self._entropy(), now=self._now()))
                for friend, rec in list(j.friends.items()):
                    if rec.status != "active" or j.live_of.get(friend):
                        continue
                    silent = time.monotonic() - self._contact.get((number, friend), started)
                    if silent > self.settings.friend_silence:
                        log.info("job %d: %s silent for %.0f s: gone", number, friend, silent)
                        self.apply(core.DropFriend(job=number, friend=friend, entropy=self._entropy(), now=self._now()))


async def run_requester(
    *,
    master: Address,
    host: str,
    port: int,
    db: Path,
    home: Path,
    backend: blender.Backend,
    settings: RequesterSettings = RequesterSettings(),
    limits: Limits = Limits(),
    announce=print,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Replay ``db``, listen, and serve clients and friends until cancelled."""
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
            nursery.start_soon(node.react_forever, nursery)
            nursery.start_soon(node.tick_forever)
            task_status.started(node.address)
    finally:
        log_.close()
