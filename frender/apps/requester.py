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
| ``master_link``      | the one persistent, typed session to the master |
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
import time
from pathlib import Path
from typing import Callable

import trio
from attrs import frozen

from frender import blender
from frender.apps import artist, job_view, pack, words
from frender.apps.frame_store import FrameStore
from frender.apps.master_link import MasterLink
from frender.apps.own_renders import OwnRenders
from frender.apps.reactions import Reactions
from frender.apps.requester_events import (
    crop_boxes,
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
from frender.apps.views import JobFacts
from frender.apps.node import Node, Step
from frender.apps.uploads import Uploads, is_sha256
from frender.apps import messages as msg
from frender.core import job as core
from frender.store import LogFailed, SqliteLog
from frender.transports import (
    Address,
    AssignmentRefused,
    Handler,
    Identity,
    Limits,
    Peer,
    Refused,
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
    core.CheaterEvicted,
)


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
    evictions: dict[tuple[int, tuple[str, ...]], core.OwedEvictions]


class RequesterNode(Node[core.Requester], Submits, FrameStore, Reactions, OwnRenders, Handler):
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
        self._dropped: set[tuple[str, object]] = set()  # soft: reactions whose result the core refused (stale)
        self.wants: dict[int, JobWants] = {}  # job -> friends asked for and priority
        self.started: dict[int, float] = {}  # job -> when it started (the log's time), for the estimate
        self.master_problem = ""  # soft: why the master does not answer now; "" while it does
        self.short_why: dict[int, tuple[str, str]] = {}  # soft: job -> the master's (code, reason) when it last granted none
        self.wake = trio.Event()  # set when new reactions are owed
        self._changed = trio.Event()  # set (and replaced) whenever the state changes
        self._contact: dict[tuple[int, str], float] = {}  # soft: (job, friend) -> trio time we last heard from it
        self._in_flight: set[object] = set()
        self._failures: dict[object, int] = {}  # reaction -> failed attempts in a row (its backoff)
        self._own_render_lock = trio.Lock()
        self._opening_now: set[str] = set()  # soft: openings whose submit still runs (the reactor leaves them alone)
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
        now = core.owed(self.state, reported=self.reported, told=self.told)
        dropped = self._dropped

        def keyed(kind: str, items: tuple) -> dict:
            return {item.key: item for item in items if (kind, item.key) not in dropped}

        return Owed(
            comparisons=keyed("comparisons", now.comparisons),
            own_renders=keyed("own_renders", now.own_renders),
            more_friends=keyed("more_friends", now.more_friends),
            reports=keyed("reports", now.reports),
            openings=dict(self.openings),
            evictions=keyed("evictions", now.evictions),
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
        code, detail = self.short_why.get(accepted.job, ("", "")) if not active and not j.finished else ("", "")
        return msg.ProgressReply(
            job=accepted.job,
            total=j.total,
            delivered=j.delivered,
            final=j.final,
            friends=tuple(
                msg.FriendLine(
                    friend=p.friend, delivered=p.delivered, final=p.final, checks=p.checks_paid, evicted=p.evicted, gone=p.status == "gone"
                )
                for p in lines
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
            eta=self._eta(accepted.job, len(j.final), j.total, j.finished),
            waiting=words.waiting_cause(code) if code else "",
            waiting_detail=detail,
        )

    def _eta(self, job: int, final: int, total: int, finished: bool) -> float:
        """The one estimate (``words.time_left``) from the pace of final frames since the job started."""
        return 0.0 if finished else words.time_left(self._now() - self.started.get(job, self._now()), final, total)

    def _job_line(self, accepted: JobAccepted) -> msg.JobLine:
        """One line of ``frender jobs``: state, frames, friends, an estimate from the pace so far, points."""
        job = accepted.job
        j = core.summary(self.state, job)
        escrowed, spent = core.points(self.state, job)
        wants = self.wants.get(job)
        final = len(j.final)
        eta = self._eta(job, final, j.total, j.finished)
        active = sum(1 for p in core.progress(self.state, job) if p.status == "active") if not j.finished else 0
        code = self.short_why.get(job, ("", ""))[0] if not j.finished and not active else ""
        return msg.JobLine(
            job=job,
            state=words.job_state(finished=j.finished, cancelled=j.cancelled, failed=j.failed, active=active),
            waiting=words.waiting_cause(code) if code else "",
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
            file=accepted.tree_main,
            frames=artist.frame_ranges(core.frame_numbers(self.state, job)),
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
                crop = crop_boxes(core.window_of(self.state, job, event.task), accepted)
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
