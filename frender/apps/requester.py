"""The requester process: hosts clients' jobs, hands out work, verifies and pays.

The shell around ``frender.core.job``: a ``Node`` (frender/apps/node.py) that
decides on a draft, commits every ready call's events in one transaction,
evolves ``state`` after, and stops on a failed append (``LogFailed``). Inputs
become commands (with ``now`` and fresh ``entropy`` from here). Its parts, each
a room of its own:

| module               | what it holds |
|----------------------|---------------|
| ``requester.py``     | the node: its state, the RPC (progress, jobs, cancel, work), the dashboard's views |
| ``requester_events`` | the shell's own logged events (``JobAccepted``, ``JobOpening``, ...) |
| ``submits``          | a client's submit: inspect, log the opening, ask the master, accept |
| ``frame_store``      | files named from ids, hashed once, put and got, checked when served |
| ``uploads``          | the artists' files, owned by the keys that uploaded them |
| ``reactions``        | what the core owes (``core.owed``), reports, growing jobs, ticks |
| ``own_renders``      | comparisons and the requester's own renders |
| ``job_replies``      | what a client hears of its jobs: progress, the jobs list, cancel |
| ``tiles``            | a still's tiles: units, windows, stitched frames |
| ``master_link``      | the one persistent, typed session to the master |
| ``requester_room``   | ``Room``: what each room uses of the node and of the others, so mypy checks each on its own |
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
import time
from pathlib import Path
from typing import Any, Callable

import trio
from attrs import frozen

from frender import blender
from frender.apps import job_view, pack, tiles, words
from frender.apps.comparisons import ComparePool
from frender.apps.frame_store import FrameStore, Turns
from frender.apps.heap import bound_heap, trim_forever
from frender.apps.master_link import MasterLink
from frender.apps.own_renders import OwnRenders
from frender.apps.reactions import Reactions
from frender.apps.requester_events import (
    EvictionsReported,
    FriendKeys,
    JobAccepted,
    JobOpening,
    JobOpeningReleased,
    JobWants,
    ReportDelivered,
    ReportRefused,
)
from frender.apps.submits import Submits
from frender.apps.job_replies import JobReplies
from frender.apps.views import JobFacts
from frender.apps.node import Node, Step
from frender.apps.uploads import Uploads, is_sha256
from frender.apps import messages as msg
from frender.core import job as core
from frender.store import LogFailed, SqliteLog
from frender.transports import (
    Address,
    Assignment,
    AssignmentRefused,
    Handler,
    Identity,
    Limits,
    Peer,
    Refused,
    SignedAssignment,
    check_assignment,
    serve,
)

__all__ = [
    "JobAccepted", "JobOpening", "JobOpeningReleased", "FriendKeys", "LogFailed", "ReportDelivered", "ReportRefused", "RequesterNode",
    "RequesterSettings", "run_requester",
]

log = logging.getLogger("frender.requester")

# Core events after which the core may owe new reactions (``core.owed``): they wake the reactor.
_REACTIONS = (
    core.ComparisonRequested, core.OwnRenderRequested, core.MoreFriendsWanted, core.JobFinished, core.JobCancelled, core.JobFailed,
    core.CheaterEvicted, core.ChecksDrawn,  # ChecksDrawn: a still's crop windows are rendered ahead (tiles.TiledFrames)
)


# Events after which the own renders owed may be fewer (Rule 21).
_OWN_SETTLED = (core.OwnRenderReceived, core.CheckResolved, core.JobFinished, core.JobCancelled, core.JobFailed)


# New jobs' spot checks (Rules 11, 14): the requester renders each spotted window alone, every window of a spotted
# batch: all of them while a friend's reputation is below spot_trust_scale. The check work stays one window a
# frame (8.8% of M at 1080p), and no coalition of up to half a job's friends keeps a forgery (docs/verification.md).
# Logged with each job (the core's defaults are the rule before, so older logs read as they ran).
ANCHORED_SPOTS: dict[str, Any] = {"spot_alone": True, "spots_per_batch": 8}
# New jobs' rules, logged with each: anchored spots, and each peer check to the eligible checker owing the fewest
# (Rule 10: a still's eight checks on eight friends, at most two each, where a random draw put three on one).
NEW_JOBS: dict[str, Any] = {**ANCHORED_SPOTS, "even_checkers": True}


@frozen(kw_only=True)
class RequesterSettings:
    job: core.JobSettings = core.JobSettings(seconds_per_frame=5.0, startup_seconds=5.0, **NEW_JOBS)
    max_friends: int = 64
    max_frames: int = 10_000  # frames in one job, as the artist counts them (a still in tiles is one frame)
    max_tiles: int = 10_000  # tiles in one job (its frames times tiles per frame): each is a work unit the core keeps
    # ``--tiles auto`` shares the tail of a short animation in tiles when our own render of its frame took this long
    long_frame: float = core.LONG_FRAME_SECONDS
    tick: float = 0.5  # seconds between deadline checks
    # A friend holding no task that has not asked for work for this long is gone
    # (idle friends ask every half second; rendering friends hold a task).
    friend_silence: float = 5.0
    hold_work: float = 2.0  # an idle friend's WantWork waits this long for work to appear
    hold_admission: float = 8.0  # and this long while admission holds it back (Rule 21; a friend waits 10 s for a reply)
    hold_progress: float = 0.5  # a client's Progress waits this long for frames delivered or final
    master_retry: float = 1.0  # seconds before the first retry of a failed reaction (the master, a render)
    retry_max: float = 30.0  # retries back off, doubling and jittered, up to this
    render_limits: blender.Limits = blender.Limits(wall_seconds=600.0)
    upload_quota: int = 8 << 30  # bytes of uploads one user may hold here at once
    upload_ttl: float = 24 * 3600.0  # an upload is deleted this long after it arrived (a job keeps its own link)
    upload_balance: int = 1  # points an uploader's account must hold: a job costs at least one
    grow_every: float = 2.0  # seconds between asks for the friends a job still lacks
    # At submit, render the job's first frame whole and windows of it (blender.measure_crops): a file whose windows
    # differ from its frame is checked on whole frames. False trusts inspection's list alone (crop_unsafe).
    measure_crops: bool = True
    # Frame bodies received at once (each holds ~2 MB of buffers while it arrives), and at most this many for one key:
    # the others' puts wait for their turn before they are told to send, so memory does not grow with the friends.
    frame_bodies: int = 8
    frame_bodies_per_key: int = 2
    # Own renders (checks, spot checks, arbitrations) side by side: 1 on a requester whose CPU is shared; more on a
    # server with cores to spare, where the spot checks of a still's tiles would otherwise wait in one line.
    own_renders_at_once: int = 1
    # Admission (the core's Rule 21): while the own renders owed would take longer than this many seconds, friends get
    # checks only, no frames to render; so the frames taken become final at the pace they arrive, however many friends.
    own_backlog: float = 60.0


@frozen(kw_only=True)
class Owed:
    """The reactions owed now, by key: what the core's state waits for (``core.owed``), and openings to release."""

    comparisons: dict[tuple[int, int, str], core.OwedComparison]
    own_renders: dict[tuple[int, int], core.OwedRender]
    more_friends: dict[int, core.OwedFriends]
    reports: dict[int, core.OwedReport]
    openings: dict[str, JobOpening]
    evictions: dict[tuple[int, tuple[str, ...]], core.OwedEvictions]
    prerenders: dict[tuple[int, int, int, int, int, int], tiles.Prerender]  # windows of tiles rendered ahead (tiles.TiledFrames)


class RequesterNode(Node[core.Requester], Submits, FrameStore, JobReplies, Reactions, OwnRenders, Handler):
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
        self.told: dict[int, set[str]] = {}  # job -> caught friends the master heard of while it ran
        self.openings: dict[str, JobOpening] = {}  # logged openings that are neither accepted nor released yet
        self._dropped: set[tuple[str, object]] = set()  # soft: (kind, owed item) whose result the core refused (stale)
        self.wants: dict[int, JobWants] = {}  # job -> friends asked for and priority
        self.started: dict[int, float] = {}  # job -> when it started (the log's time), for the estimate
        self.recalls: dict[int, dict[int, tuple[int, bool]]] = {}  # job -> frame withdrawn -> (times, its caught friend rendered it)
        self.master_problem = ""  # soft: why the master does not answer now; "" while it does
        self.short_why: dict[int, tuple[str, str]] = {}  # soft: job -> the master's (code, reason) when it last granted none
        self.wake = trio.Event()  # set when new reactions are owed
        self._changed = trio.Event()  # set (and replaced) whenever the state changes
        self._contact: dict[tuple[int, str], float] = {}  # soft: (job, friend) -> trio time we last heard from it
        self._asking: dict[tuple[int, str], int] = {}  # soft: (job, friend) -> its calls for work held now
        self._in_flight: set[object] = set()
        self._failures: dict[object, int] = {}  # reaction -> failed attempts in a row (its backoff)
        self._own_render_lock = trio.CapacityLimiter(max(1, settings.own_renders_at_once))  # own renders at once
        self.comparisons = ComparePool.shared()  # decoding and comparing pixels: in worker processes, off the event loop
        self._bodies = Turns(settings.frame_bodies, settings.frame_bodies_per_key)  # frame bodies arriving at once
        self._own_sessions: dict[int, list[blender.Session]] = {}  # soft: job -> its idle Blender sessions for our own renders
        # soft: seconds our own render of a window (False) and of a whole frame (True) takes, averaged; first a guess
        # (a window: twice its 1/16 of the area, for a render's fixed costs).
        self._own_pace = {False: settings.job.seconds_per_frame / 8, True: settings.job.seconds_per_frame}
        self._own_timed: set[bool] = set()
        self._admission = trio.Event()  # set (and replaced) when the own renders owed may have fallen (Rule 21)
        self._admitting: bool | None = None  # soft: whether friends get frames (Rule 21), read once per commit
        self._held_back = False  # soft: admission was closed when last read
        self._takers: dict[int, frozenset[str]] = {}  # soft: job -> who a pending check would go to (core.check_takers)
        self._opening_now: set[str] = set()  # soft: openings whose submit still runs (the reactor leaves them alone)
        self._prerendered: dict[int, set[tuple[int, int, int, int, int, int]]] = {}  # soft: job -> its tiles' windows rendered ahead
        self._trees: dict[int, dict[str, str]] = {}  # tree job -> the sha256 of each of its files -> its path in the tree
        self.master_link = MasterLink(master, identity, limits=limits)  # every call to the master, on one session
        self._dashboard = ""  # the web dashboard's base URL, once one serves this node (``dashboard_at``)
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
            case EvictionsReported(job=j, friends=friends):
                self.told.setdefault(j, set()).update(friends)
            case JobOpening(opening=o):
                self.openings[o] = event
            case JobOpeningReleased(opening=o):
                self.openings.pop(o, None)
            case JobWants(job=j):
                self.wants[j] = event
            case core.JobStarted(job=j, now=now):
                self.started[j] = now
            case core.FramesRecalled(job=j, requeued=requeued, held=held):
                recalls = self.recalls.setdefault(j, {})
                for frame in (*requeued, *held):
                    recalls[frame] = (recalls.get(frame, (0, False))[0] + 1, frame in requeued)
            case core.CopyReceived(job=j, task=t, frame=f, sha256=sha):
                self.copies.setdefault((j, sha), self._copy_path(j, t, f))
            case core.OwnRenderReceived(job=j, check=c, sha256=sha, whole=whole):
                self.copies.setdefault((j, sha), self._own_path(j, c, whole=whole))
            case core.FriendsJoined(job=j, friends=granted):
                for g in granted:  # silence is counted from joining (or from this process's start, on replay)
                    self._heard_from(j, g.friend)
        super()._fold(event)

    @property
    def owed(self) -> Owed:
        """What the state waits for now (``core.owed``), less results the core refused, and the openings to release."""
        return self.owed_now()

    def owed_now(self, *, prerenders: bool = True) -> Owed:
        """``owed``; without ``prerenders`` (empty), for a look-up of another kind (a job of many tiles has many)."""
        now = core.owed(self.state, reported=self.reported, told=self.told)
        dropped = self._dropped

        def fresh(kind: str, item: object) -> bool:
            """Not refused: a refused item is dropped, not its key (what is owed later under it is another item).
            Only kinds with a dropped item are looked up (a report holds dicts, so it is never hashed)."""
            return kind not in kinds or (kind, item) not in dropped

        kinds = {kind for kind, _ in dropped}

        return Owed(
            comparisons={o.key: o for o in now.comparisons if fresh("comparisons", o)},
            own_renders={o.key: o for o in now.own_renders if fresh("own_renders", o)},
            more_friends={o.key: o for o in now.more_friends if fresh("more_friends", o)},
            reports={o.key: o for o in now.reports if fresh("reports", o)},
            openings=dict(self.openings),
            evictions={o.key: o for o in now.evictions if fresh("evictions", o)},
            prerenders=self._prerenders_owed() if prerenders else {},
        )

    def _committed(self, batch: list[object]) -> None:
        """Wake held calls (a change of state) and reactions (a change of what is owed)."""
        self._changed.set()
        self._changed = trio.Event()
        closed, self._admitting = self._held_back, None
        self._takers.clear()
        if any(isinstance(e, _REACTIONS) or self._tile_handed_out(e) for e in batch):
            self.wake.set()
        # Friends held back by admission wake when it opens, or when checks are drawn (one may be theirs to take).
        opened = closed and any(isinstance(e, _OWN_SETTLED) for e in batch) and self._admits()
        if opened or any(isinstance(e, core.ChecksDrawn) for e in batch):
            self._admission.set()
            self._admission = trio.Event()

    def _tile_handed_out(self, event: object) -> bool:
        """A tile handed out: the window of its check may be drawn ahead, to render beside it (tiles.TiledFrames)."""
        return type(event) is core.TaskAssigned and core.tile_grid(self.state, event.job) is not None

    def decide(self, *steps: Step[core.Requester]) -> list[object]:
        """``Node.decide``; frames handed out change what admission reads (Rule 21), so it is read again for the next
        ask at once, not after the commit: asks woken together are decided one after another on the draft."""
        decided = super().decide(*steps)
        if any(type(event) is core.TaskAssigned for event in decided):
            self._admitting = None
        return decided

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
        ceiling = min(self.settings.retry_max, self.settings.master_retry * 2.0 ** min(failures - 1, 32))
        return ceiling * random.uniform(0.5, 1.0)

    @staticmethod
    def _entropy() -> str:
        return secrets.token_hex(16)


    # ------------------------------------------------------------ the RPC

    async def call(self, peer: Peer, request: object) -> object:
        msg.check_bounds(request)
        match request:
            case msg.Submit():
                return await self._submit(peer, request)
            case msg.DashboardLink(job=j):
                self._own_job(peer, j)
                return msg.DashboardLinkReply(url=self._dashboard_link(j))
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
            case msg.WantWork(assignment=signed, keeping=keeping, sending=sending):
                return await self._want_work(peer, signed, keeping, sending)
            case msg.GiveBack(assignment=signed, task=task, error=error):
                assignment = await self._check(peer, signed)
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

    async def _check(self, peer: Peer, signed: SignedAssignment) -> Assignment:
        """A friend's master-signed assignment, for this requester and this peer's key, and a job hosted here. While a
        submit is being accepted its job is waited for (up to ``hold_work``): the master hands a friend its assignment
        as soon as it grants it, which may be before this requester has logged the job. Only an assignment the master
        signed for this peer is waited for."""
        assignment = check_assignment(
            signed,
            master_fingerprint=self.master.fingerprint,
            now=self._now(),
            requester_key=self.identity.fingerprint,
            friend_key=peer.fingerprint,
        )
        with trio.move_on_after(self.settings.hold_work):
            while assignment.job not in self.jobs and self._opening_now:
                await self._changed.wait()
        if assignment.job not in self.jobs:
            raise AssignmentRefused(f"job {assignment.job} is not hosted here")
        return assignment

    async def _want_work(self, peer: Peer, signed: SignedAssignment, keeping: tuple[int, ...], sending: tuple[int, ...] = ()) -> msg.Work | msg.NoWork:
        """Work for the friend; with none yet, hold the call until some appears (no polling gap)."""
        assignment = await self._check(peer, signed)
        job, friend = assignment.job, assignment.friend
        if self.keys.get(job, {}).get(friend) != peer.fingerprint:
            raise AssignmentRefused(f"{friend} was not granted to job {job} here")
        # Held until work appears; a friend held back by admission (Rule 21) longer, so a thousand of them do not
        # poll: it is woken when our own renders settle or checks are drawn, not by every commit.
        key = (job, friend)
        self._asking[key] = self._asking.get(key, 0) + 1  # a friend whose call is held is not silent
        try:
            with trio.move_on_after(self.settings.hold_work if self._admitted(job, friend) else self.settings.hold_admission):
                while True:
                    self._heard_from(job, friend)
                    offer = await self._offer(job, friend, keeping, sending)
                    if offer is not None:
                        return offer
                    await (self._changed if self._admitted(job, friend) else self._admission).wait()
            return msg.NoWork(retry_after=0.1)
        finally:
            self._heard_from(job, friend)
            if self._asking[key] == 1:
                del self._asking[key]
            else:
                self._asking[key] -= 1

    async def _offer(self, job: int, friend: str, keeping: tuple[int, ...], sending: tuple[int, ...] = ()) -> msg.Work | msg.NoWork | None:
        """A task for ``friend``, the news that its job is over, or None: nothing yet."""
        if core.is_finished(self.state, job):
            return msg.NoWork(over=True, why=self._over(job))
        now = self._now()
        admit = self._admitted(job, friend)
        decided: list[object] = []
        if admit or not self._nothing_for(job, friend, keeping, sending):
            try:
                decided = await self.apply(
                    core.AskForTask(job=job, friend=friend, keeping=keeping, sending=sending, admit=admit, entropy=self._entropy(), now=now)
                )
            except Refused as exc:
                if exc.code == "job-state":  # it finished in a commit that was pending when we looked
                    return msg.NoWork(over=True, why=self._over(job))
                raise
        for event in decided:
            if isinstance(event, core.TaskAssigned) and event.friend == friend:
                accepted = self.jobs[job]
                # Rule 4 of the core: the friend learns task, frames and deadline only (a tile: its frame and box).
                grid = core.tile_grid(self.state, job)
                window = core.window_of(self.state, job, event.task)
                views = [tiles.unit_view(grid, accepted, unit, window) for unit in (event.frames[:1] if grid is None else event.frames)]
                whole = len(views) > 1  # a tiled job's whole frame: each tile rendered in turn (Rule 20)
                box = None if whole else views[0].render
                return msg.Work(
                    job=job,
                    task=event.task,
                    frames=event.frames if grid is None else (views[0].frame,),
                    deadline=max(event.deadline - now, 1.0),
                    width=accepted.width,
                    height=accepted.height,
                    window=None if box is None else _crop_box(box),
                    deliver_as=() if grid is None else event.frames,
                    noisy=accepted.denoise_after,
                    tiles=tuple(_crop_box(v.render) for v in views if v.render is not None) if whole else (),
                )
        outlook = core.outlook(self.state, job, friend)
        if outlook in ("done", "evicted"):
            return msg.NoWork(over=True, why=outlook)
        return None

    def _admitted(self, job: int, friend: str) -> bool:
        """Whether ``friend`` gets frames to render now (Rule 21): while our own renders are behind, not if every batch
        it renders next is ours to check; a friend whose batches we spot only now and then is never held back."""
        return self._admits() or not core.spotted_always(self.state, job, friend)

    def _nothing_for(self, job: int, friend: str, keeping: tuple[int, ...], sending: tuple[int, ...]) -> bool:
        """While admission holds friends back: an ask that would get no check and give up no task decides nothing,
        so a thousand held friends asking again cost no decision each (``core.check_takers``, read once per commit)."""
        takers = self._takers.get(job)
        if takers is None:
            takers = self._takers[job] = core.check_takers(self.state, job)
        return friend not in takers and core.live_tasks(self.state, job, friend) <= {*keeping, *sending}

    def _over(self, job: int) -> str:
        j = core.summary(self.state, job)
        if j.failed:
            return f"the job failed: {words.failure_text(j.failure_cause, j.failure)}"
        return "the job was cancelled" if j.cancelled else "the job is finished"


    # ------------------------------------------------------ for the dashboard
    # The view frender.apps.web reads (web.RequesterView), from the folded state.

    @property
    def key(self) -> str:
        return self.identity.fingerprint

    @property
    def master_key(self) -> str:
        return self.master.fingerprint

    def job_numbers(self) -> list[int]:
        return list(self.jobs)

    def job_facts(self, job: int) -> JobFacts:
        accepted = self.jobs[job]
        profile = accepted.profile
        return JobFacts(
            submitter=accepted.submitter, blender=f"{profile.blender_version} on {profile.device}", fps=accepted.fps,
            extension=accepted.output.extension,
        )

    def dashboard_at(self, url: str) -> None:
        self._dashboard = url

    def _dashboard_link(self, job: int) -> str:
        """A signed link to ``job``'s page, or "" when no dashboard serves this node."""
        if not self._dashboard:
            return ""
        from frender.apps.web import LINK_SECONDS, job_scope, sign_token  # the web's packages load only with --web

        token = sign_token(self.identity, job_scope(job), now=time.time(), seconds=LINK_SECONDS)
        return f"{self._dashboard}/job/{job}?t={token}"

    def progress_of(self, job: int) -> msg.ProgressReply:
        return self._progress(self.jobs[job])

    def evictions_of(self, job: int) -> dict[str, core.Evidence]:
        return core.evictions(self.state, job)

    def frame_states_of(self, job: int) -> dict[int, str]:
        """Each frame's state, for the job's page (``job_view.frame_states``)."""
        return job_view.frame_states(self.state, job)

    def points_of(self, job: int) -> tuple[int, int]:
        """(escrowed, earned): M + s per friend granted; final frames and paid checks of friends not evicted."""
        return core.points(self.state, job)

    async def changed(self) -> None:
        """Return at the next change of state."""
        await self._changed.wait()


def _evolve_core(state: core.Requester, event: object) -> None:
    """The core's evolve, for the core's events (the shell's own pass by)."""
    if type(event) in core.EVENTS:
        core.evolve(state, event)


def _step(item: object) -> Step[core.Requester]:
    """A core command decided on the draft, or a shell event that passes through as it is."""
    if type(item) in core.COMMANDS:
        return functools.partial(core.decide, command=item)
    return lambda draft: [item]


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
    announce: Callable[[str], None] = print,
    web: tuple[str, int] | None = None,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Replay ``db``, listen, and serve clients and friends until cancelled; with ``web``, the dashboard too."""
    from frender.apps.trust_check import say_if_untrusted

    identity = Identity.load_or_create(home)
    bound_heap()  # before any worker thread: freed frame buffers go back to the system (frender.apps.heap)
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
            nursery.start_soon(node.hold_own_sessions)
            nursery.start_soon(node.comparisons.warm)
            nursery.start_soon(node.tick_forever)
            nursery.start_soon(node.grow_forever)
            nursery.start_soon(trim_forever)
            if web is not None:
                from frender.apps.web import serve_requester_web

                url = await nursery.start(serve_requester_web, node, *web)
                announce(f"requester dashboard at {url}/")
            task_status.started(node.address)
    finally:
        log_.close()


def _crop_box(box: blender.Window) -> msg.CropBox:
    return msg.CropBox(left=box.left, top=box.top, width=box.width, height=box.height, in_place=box.in_place, lossless=box.lossless)
