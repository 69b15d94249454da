"""The requester's decider: scheduling, the verification circle and the job report.

Theory of operation. One aggregate, ``Requester``, holds a ``Job`` per job
number. ``decide`` validates a command, then plays it on a *draft* (a cheap
container copy of the job) through ``evolve``, and lets the job's policies
react on the draft until nothing more follows (batches close, frames become
final, orphaned checks go to the requester, more friends are wanted, the job
finishes). It returns every event it played; the real state is untouched until
the shell evolves them. Records inside a job are immutable, so the draft copy
is a handful of ``dict.copy`` calls, not a deep copy.

Rule 1: every frame is final exactly once, and a final frame is never
        withdrawn; the client is served final frames only.
Rule 2: a frame becomes final once its batch's checks are drawn and every
        check covering it is resolved in its author's favour.
Rule 3: a task that misses its deadline, is handed back, or whose friend is
        gone goes back to the queue; a frame is not retried on a friend that
        lost it while another live friend has not.
Rule 4: test frames are drawn (from the command's entropy) only after the
        subject delivered them, and a check task looks to the verifier like
        any render task: the friend sees task number, frames and deadline only.
Rule 5: a friend is checked by the nearest eligible friend to its left in the
        ring (frender.core._circle): never itself, its owner, or a friend it
        was found mis-calibrated against; with none, the requester renders.
Rule 6: a disagreement is arbitrated by the requester's own render; a party
        is evicted only when its image is far from the arbitration's (beyond
        the calibration tier). Evicted friends get nothing; their non-final
        frames are discarded and re-queued, their checks re-assigned.
Rule 7: check renders (test frames, losing backup copies) are drawn only
        within the escrowed budget ``checks_escrowed x friends granted``, so
        the report never pays beyond the escrow: one point per final frame,
        one per check render not found wrong. Arbitration is unpaid.
Rule 8: faults (undecodable, wrong size, lost) are retried, never punished.
Rule 9: a friend may ask ahead, while it still renders the last frame of a
        task it keeps (``AskForTask.keeping``), so its next task is waiting
        when that frame is done. Asking ahead gets at most one more task;
        near the end of the queue (no more frames than active friends) it
        gets only checks, and never a backup: the last frames and backups go
        to friends that are really idle.

How a shell drives this
-----------------------
One task owns ``state = Requester()`` (or ``fold(evolve, Requester(), log)``
at start-up). For every input it builds a command, then::

    events = decide(state, command)          # or Rejected: answer the peer
    log.append([e for e in events if is_durable(e)])
    for e in events: evolve(state, e)
    for e in events: react(e)

Commands (all carry ``job`` and ``now``; those that may draw carry
``entropy = secrets.token_hex(16)``):

- ``StartJob(frames, settings, checks_escrowed)`` once the master opened the
  job (pass ``settings.checks_to_escrow(M, N)`` as the master's
  ``checks_per_friend``), then ``AddFriends`` with each ``FriendsAssigned``.
- ``AskForTask(friend, keeping)`` when a friend pulls work; ``keeping`` names
  the live tasks it is still rendering (Rule 9), every other live task of its
  is given up. React to ``TaskAssigned``
  for that friend by sending it ``task, frames, deadline`` only (never
  ``kind``, ``checks`` or ``backup_of``). No event for it: ask
  ``outlook(state, job, friend)``: ``"wait"`` (poll again), ``"done"`` or
  ``"evicted"`` (job over for this friend).
- ``DeliverFrame(friend, task, frame, sha256, ok, reason)`` after the file is
  stored, decoded and its size checked (``ok=False`` is a fault).
- ``ComparisonRequested`` → run the comparator on the two named copies,
  send ``RecordComparison(check, against, a_sha256, b_sha256, verdict,
  fraction_off, max_diff, psnr)`` (the shas echo the request; stale answers are refused).
- ``OwnRenderRequested`` → render the frame with the requester's own Blender,
  send ``RecordOwnRender(check, sha256)``.
- ``Tick`` every second or so; ``DropFriend`` when a connection drops or a
  friend stops polling (an "active" friend that never asks holds its checks
  and the frames others lost); ``ReturnTask`` on a give-back.
- ``MoreFriendsWanted`` → ``RequestFriends(job=J, want=count, exclude=...)``.
- ``FramesFinal`` → serve those frames to the client.
- ``JobFinished`` → ``event.report.to_master(requester=..., head_seq=...,
  head_hash=..., now=...)`` gives the master's ``ReportJob``.

Queries: ``progress``, ``final_frames``, ``open_frames``, ``outlook``.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable, ClassVar

from attrs import Factory, define, evolve as _replace, frozen

from frender.core import _circle
from frender.core._decider import Rejected
from frender.core.master import ReportJob

__all__ = [
    # settings, records and state
    "JobSettings",
    "GrantedFriend",
    "Figures",
    "Evidence",
    "FinalFrame",
    "JobReport",
    "Friend",
    "FriendProgress",
    "Task",
    "Check",
    "Job",
    "Requester",
    # commands
    "StartJob",
    "AddFriends",
    "AskForTask",
    "DeliverFrame",
    "RecordComparison",
    "RecordOwnRender",
    "Tick",
    "DropFriend",
    "ReturnTask",
    "COMMANDS",
    # events
    "JobStarted",
    "FriendsJoined",
    "FriendLeft",
    "FriendReturned",
    "MoreFriendsWanted",
    "TaskAssigned",
    "TaskDropped",
    "CopyReceived",
    "CopyFaulted",
    "ChecksDrawn",
    "ComparisonRequested",
    "ComparisonMade",
    "OwnRenderRequested",
    "OwnRenderReceived",
    "CheckResolved",
    "CheaterEvicted",
    "FramesFinal",
    "JobFinished",
    "EVENTS",
    # the decider and queries
    "decide",
    "evolve",
    "progress",
    "final_frames",
    "open_frames",
    "outlook",
    "chunk_size",
]

VERDICTS = ("identical", "agree", "disagree")


@frozen(kw_only=True)
class JobSettings:
    """How a job is scheduled and checked; fixed when the job starts."""

    checks_per_friend: int = 1  # s: test frames per share ("end") or per batch ("batch")
    check_timing: str = "batch"  # "end": over a friend's whole share (the paper); "batch": per batch
    batch_size: int = 8  # frames per batch when check_timing == "batch"
    adaptive: bool | None = None  # None: on for jobs of at least adaptive_from frames
    adaptive_from: int = 100
    trust_after: int = 10  # clean checks before a friend is checked with probability 1/run
    max_chunk: int = 8  # frames per task at most
    seconds_per_frame: float = 60.0  # render time estimate, for deadlines
    startup_seconds: float = 10.0  # Blender start-up and scene load per task
    deadline_factor: float = 3.0  # deadline = factor x estimated task time
    backups: bool = True  # idle friends take copies of the slowest tasks at the end
    calibration_fraction: float = 0.05  # arbitration vs a party within this tier is calibration...
    calibration_psnr: float = 36.0  # ...if PSNR is at least this (stale frames: 33.5 dB)

    def problems(self) -> list[str]:
        out = []
        if self.checks_per_friend < 0:
            out.append("checks_per_friend is never negative")
        if self.check_timing not in ("end", "batch"):
            out.append("check_timing is 'end' or 'batch'")
        if self.batch_size < 1 or self.max_chunk < 1 or self.trust_after < 0:
            out.append("batch_size and max_chunk are at least 1")
        if not (self.seconds_per_frame > 0 and self.startup_seconds >= 0 and self.deadline_factor >= 1):
            out.append("time estimates are positive and deadline_factor at least 1")
        if not (0 <= self.calibration_fraction <= 1):
            out.append("calibration_fraction is a fraction")
        return out

    def min_chunk(self) -> int:
        """Frames a task needs so that Blender's start-up costs at most half a frame's time per frame."""
        return max(1, min(self.max_chunk, math.ceil(2 * self.startup_seconds / self.seconds_per_frame)))

    def late_after(self, frames: int) -> float:
        """Seconds after which a task of ``frames`` frames is late: half as long again as its estimate,
        counting one frame more for a task asked for ahead (it starts once the frame in hand is done)."""
        return 1.5 * (self.startup_seconds + (frames + 1) * self.seconds_per_frame)

    def checks_to_escrow(self, frames: int, friends: int) -> int:
        """The ``checks_per_friend`` to ask the master to escrow for this job (per friend granted)."""
        if self.check_timing == "end":
            return self.checks_per_friend
        share = math.ceil(frames / max(friends, 1))
        return self.checks_per_friend * (math.ceil(share / self.batch_size) + 1)


# ---------------------------------------------------------------- records


@frozen(kw_only=True)
class GrantedFriend:
    friend: str
    owner: str
    clean_run: int = 0  # consecutive clean checks, from the master's FriendRecord


@frozen(kw_only=True)
class Figures:
    """One comparison as the comparator measured it, on decoded pixels."""

    verdict: str  # identical | agree | disagree
    fraction_off: float = 0.0  # pixels off by more than 4/255
    max_diff: int = 0  # largest channel difference, 0..255
    psnr: float = 99.0


@frozen(kw_only=True)
class Evidence:
    """Why a friend was evicted: the frame, both hashes, the figures, the arbitration."""

    check: int
    frame: int
    subject: str
    subject_sha256: str
    verifier: str | None  # None: the requester's own render
    verifier_sha256: str
    arbitration_sha256: str
    pair: Figures | None = None
    vs_subject: Figures | None = None
    vs_verifier: Figures | None = None


@frozen(kw_only=True)
class FinalFrame:
    frame: int
    friend: str
    sha256: str


@frozen(kw_only=True)
class JobReport:
    """What the master's ledger consumes (plus the requester's log head, added by the shell)."""

    job: int
    frames: int
    payouts: dict[str, int] = Factory(dict)  # final frames + paid check renders, evicted excluded
    frame_points: dict[str, int] = Factory(dict)
    check_points: dict[str, int] = Factory(dict)
    check_outcomes: dict[str, tuple[bool, ...]] = Factory(dict)
    evictions: dict[str, Evidence] = Factory(dict)  # evicted friend -> the check that convicted it
    calibrations: tuple[tuple[str, str], ...] = ()  # pairs not to be formed again
    arbitrations: int = 0
    own_checks: int = 0
    escrow: int = 0  # M + checks_escrowed x friends granted

    def to_master(self, *, requester: str, head_seq: int, head_hash: str, now: float, close: bool = True) -> ReportJob:
        return ReportJob(
            requester=requester,
            job=self.job,
            payouts=dict(self.payouts),
            check_outcomes=dict(self.check_outcomes),
            evicted=tuple(self.evictions),
            head_seq=head_seq,
            head_hash=head_hash,
            close=close,
            now=now,
        )


@frozen(kw_only=True)
class Friend:
    friend: str
    owner: str
    clean_run: int
    checked: bool  # adaptive checking drew this friend's frames for checks in this job
    status: str = "active"  # active | gone | evicted


@frozen(kw_only=True)
class Task:
    task: int
    friend: str
    kind: str  # render | check | backup
    frames: tuple[int, ...]
    checks: tuple[int, ...] = ()  # for check tasks, one per frame
    backup_of: int | None = None
    deadline: float
    assigned: float


@frozen(kw_only=True)
class Check:
    check: int
    kind: str  # test (drawn from a batch) | pair (two copies of a backed-up frame)
    frame: int
    subject: str
    subject_sha256: str
    covers: tuple[int, ...]  # frames whose finality waits on this check
    state: str = "pending"
    verifier: str | None = None  # None with own=True: the requester renders
    own: bool = False
    verifier_sha256: str = ""
    task: int | None = None
    arbitration_sha256: str = ""
    pair: Figures | None = None
    vs_subject: Figures | None = None
    vs_verifier: Figures | None = None
    outcome: str = ""


# Transitions as data (h11 style): (check state, step) -> next state.
_CHECK_STEPS: dict[tuple[str, str], str] = {
    ("pending", "assign"): "assigned",
    ("pending", "own"): "own",
    ("assigned", "unassign"): "pending",
    ("comparing", "unassign"): "pending",  # the verifier's copy is void: someone renders it again
    ("assigned", "copy"): "comparing",
    ("own", "copy"): "comparing",
    ("comparing", "compare"): "comparing",
    ("comparing", "arbitrate"): "arbitrating",
    ("arbitrating", "render"): "judging",
    ("judging", "compare"): "judging",
    ("comparing", "resolve"): "resolved",
    ("judging", "resolve"): "resolved",
}
for _state in ("pending", "assigned", "own", "comparing", "arbitrating", "judging"):
    _CHECK_STEPS[(_state, "void")] = "resolved"


def _step(job: int, check: Check, step: str) -> str:
    nxt = _CHECK_STEPS.get((check.state, step))
    if nxt is None:
        raise Rejected("check-state", f"can't {step} check {check.check} of job {job} in state {check.state}") from None
    return nxt


# ---------------------------------------------------------------- commands


@frozen(kw_only=True)
class StartJob:
    job: int
    frames: tuple[int, ...]  # the chosen frames, e.g. tuple(range(1, 241))
    settings: JobSettings = Factory(JobSettings)
    checks_escrowed: int = 1  # the checks_per_friend the master escrowed per granted friend
    now: float


@frozen(kw_only=True)
class AddFriends:
    job: int
    friends: tuple[GrantedFriend, ...]
    entropy: str
    now: float


@frozen(kw_only=True)
class AskForTask:
    job: int
    friend: str
    keeping: tuple[int, ...] = ()  # live tasks the friend is still rendering (Rule 9)
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class DeliverFrame:
    job: int
    friend: str
    task: int
    frame: int
    sha256: str = ""
    ok: bool = True  # False: did not decode, wrong size, or lost in transfer (a fault)
    reason: str = ""
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class RecordComparison:
    job: int
    check: int
    against: str = "pair"  # pair | subject | verifier (the last two: the arbitration render vs that party)
    a_sha256: str  # the two copies compared, echoed from ComparisonRequested: a stale answer is refused
    b_sha256: str
    verdict: str  # identical | agree | disagree
    fraction_off: float = 0.0
    max_diff: int = 0
    psnr: float = 99.0
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class RecordOwnRender:
    job: int
    check: int
    sha256: str
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class Tick:
    job: int
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class DropFriend:
    job: int
    friend: str
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class ReturnTask:
    job: int
    friend: str
    task: int
    entropy: str = ""
    now: float


COMMANDS: tuple[type, ...] = (
    StartJob,
    AddFriends,
    AskForTask,
    DeliverFrame,
    RecordComparison,
    RecordOwnRender,
    Tick,
    DropFriend,
    ReturnTask,
)

# ------------------------------------------------------------------ events


@frozen(kw_only=True)
class JobStarted:
    tag: ClassVar[str] = "job_started.v1"
    job: int
    frames: tuple[int, ...]
    settings: JobSettings
    checks_escrowed: int
    adaptive: bool
    now: float


@frozen(kw_only=True)
class FriendsJoined:
    """Friends granted by the master, who of them is checked (adaptive), and the new ring."""

    tag: ClassVar[str] = "friends_joined.v1"
    job: int
    friends: tuple[GrantedFriend, ...]
    checked: tuple[str, ...]
    ring: tuple[str, ...]
    now: float


@frozen(kw_only=True)
class FriendLeft:
    tag: ClassVar[str] = "friend_left.v1"
    job: int
    friend: str
    now: float


@frozen(kw_only=True)
class FriendReturned:
    tag: ClassVar[str] = "friend_returned.v1"
    job: int
    friend: str
    now: float


@frozen(kw_only=True)
class MoreFriendsWanted:
    tag: ClassVar[str] = "more_friends_wanted.v1"
    job: int
    count: int
    exclude: tuple[str, ...]  # evicted friends, for RequestFriends.exclude
    now: float


@frozen(kw_only=True)
class TaskAssigned:
    """Send the friend ``task``, ``frames`` and ``deadline`` only: ``kind`` and ``checks`` stay here (Rule 4)."""

    tag: ClassVar[str] = "task_assigned.v1"
    job: int
    task: int
    friend: str
    kind: str  # render | check | backup
    frames: tuple[int, ...]
    checks: tuple[int, ...] = ()
    backup_of: int | None = None
    deadline: float
    now: float


@frozen(kw_only=True)
class TaskDropped:
    tag: ClassVar[str] = "task_dropped.v1"
    job: int
    task: int
    friend: str
    why: str  # deadline | gone | returned | evicted | replaced
    frames: tuple[int, ...]  # the frames it had not delivered
    now: float


@frozen(kw_only=True)
class CopyReceived:
    tag: ClassVar[str] = "copy_received.v1"
    job: int
    task: int
    friend: str
    frame: int
    sha256: str
    role: str  # candidate | pair | check | duplicate | unneeded (live task, check voided) | late (task dropped)
    check: int | None = None
    now: float


@frozen(kw_only=True)
class CopyFaulted:
    tag: ClassVar[str] = "copy_faulted.v1"
    job: int
    task: int
    friend: str
    frame: int
    reason: str
    now: float


@frozen(kw_only=True)
class ChecksDrawn:
    """A subject's batch closed: the test frames drawn over it, checks numbered from ``first_check``."""

    tag: ClassVar[str] = "checks_drawn.v1"
    job: int
    subject: str
    batch: int
    frames: tuple[int, ...]
    tests: tuple[int, ...]
    shas: tuple[str, ...]  # the subject's sha256 of each test frame
    first_check: int
    now: float


@frozen(kw_only=True)
class ComparisonRequested:
    """Compare copy A (the subject's, or the arbitration) with copy B. ``None`` friend: the requester."""

    tag: ClassVar[str] = "comparison_requested.v1"
    job: int
    check: int
    frame: int
    against: str  # pair | subject | verifier
    a_friend: str | None
    a_sha256: str
    b_friend: str | None
    b_sha256: str


@frozen(kw_only=True)
class ComparisonMade:
    tag: ClassVar[str] = "comparison_made.v1"
    job: int
    check: int
    against: str
    figures: Figures
    now: float


@frozen(kw_only=True)
class OwnRenderRequested:
    tag: ClassVar[str] = "own_render_requested.v1"
    job: int
    check: int
    frame: int
    purpose: str  # check | arbitration
    now: float


@frozen(kw_only=True)
class OwnRenderReceived:
    tag: ClassVar[str] = "own_render_received.v1"
    job: int
    check: int
    sha256: str
    now: float


@frozen(kw_only=True)
class CheckResolved:
    tag: ClassVar[str] = "check_resolved.v1"
    job: int
    check: int
    frame: int
    subject: str
    verifier: str | None
    outcome: str  # agreed | subject_wrong | verifier_wrong | both_wrong | calibration | void
    subject_verdict: str = ""  # right | close | wrong ("" when not arbitrated)
    verifier_verdict: str = ""
    now: float


@frozen(kw_only=True)
class CheaterEvicted:
    tag: ClassVar[str] = "cheater_evicted.v1"
    job: int
    friend: str
    evidence: Evidence
    discarded: tuple[int, ...]  # its non-final frames, back to the queue
    now: float


@frozen(kw_only=True)
class FramesFinal:
    tag: ClassVar[str] = "frames_final.v1"
    job: int
    frames: tuple[FinalFrame, ...]
    now: float


@frozen(kw_only=True)
class JobFinished:
    tag: ClassVar[str] = "job_finished.v1"
    job: int
    report: JobReport
    now: float


EVENTS: tuple[type, ...] = (
    JobStarted,
    FriendsJoined,
    FriendLeft,
    FriendReturned,
    MoreFriendsWanted,
    TaskAssigned,
    TaskDropped,
    CopyReceived,
    CopyFaulted,
    ChecksDrawn,
    ComparisonRequested,
    ComparisonMade,
    OwnRenderRequested,
    OwnRenderReceived,
    CheckResolved,
    CheaterEvicted,
    FramesFinal,
    JobFinished,
)


# ------------------------------------------------------------------- state


@frozen(kw_only=True)
class FriendProgress:
    friend: str
    owner: str
    status: str
    delivered: int  # valid copies that became candidates
    pending: int  # candidates not final yet
    final: int
    checks_paid: int
    evicted: bool


@define(kw_only=True)
class Job:
    """One job's state. Records are immutable; ``clone`` copies only the containers."""

    job: int
    frames: tuple[int, ...]
    settings: JobSettings
    checks_escrowed: int
    adaptive: bool
    phase: str = "running"  # running | finished
    friends: dict[str, Friend] = Factory(dict)
    ring: tuple[str, ...] = ()
    position: dict[str, int] = Factory(dict)
    granted: int = 0
    queue: list[int] = Factory(list)  # sorted frames waiting for a friend
    tried: dict[int, frozenset[str]] = Factory(dict)  # frame -> friends that lost it (Rule 3)
    tasks: dict[int, Task] = Factory(dict)
    live: dict[int, frozenset[int]] = Factory(dict)  # live task -> frames it has not delivered
    live_of: dict[str, frozenset[int]] = Factory(dict)
    holders: dict[int, frozenset[int]] = Factory(dict)  # frame -> live render/backup tasks
    backed: dict[int, int] = Factory(dict)  # render task -> its live backup task
    copy: dict[int, FinalFrame] = Factory(dict)  # frame -> candidate copy (delivered, not final)
    final: dict[int, FinalFrame] = Factory(dict)  # in the order frames became final
    open_batch: dict[str, tuple[int, ...]] = Factory(dict)
    batch_of: dict[int, int] = Factory(dict)  # candidate frame -> its drawn batch
    holds: dict[int, int] = Factory(dict)  # frame -> unresolved checks covering it
    ready: dict[int, None] = Factory(dict)  # drawn, unheld candidates: final at the next settle
    checks: dict[int, Check] = Factory(dict)
    pending: dict[int, None] = Factory(dict)  # checks waiting for a verifier, oldest first
    calibrated: set[tuple[str, str]] = Factory(set)  # pairs never formed again
    delivered: dict[str, int] = Factory(dict)
    outcomes: dict[str, tuple[bool, ...]] = Factory(dict)
    check_paid: dict[str, int] = Factory(dict)
    evictions: dict[str, Evidence] = Factory(dict)
    budget_used: int = 0
    next_task: int = 1
    next_check: int = 1
    next_batch: int = 1
    wanted: bool = False
    arbitrations: int = 0
    own_checks: int = 0
    report: JobReport | None = None

    def clone(self) -> Job:
        new = _replace(self)
        for name in _CONTAINERS:
            setattr(new, name, getattr(self, name).copy())
        return new

    @property
    def budget(self) -> int:
        return self.checks_escrowed * self.granted

    def active(self) -> list[str]:
        return [f for f, rec in self.friends.items() if rec.status == "active"]


_CONTAINERS = tuple(
    a.name for a in Job.__attrs_attrs__ if a.default is not None and isinstance(a.default, type(Factory(dict)))
)


@define(kw_only=True)
class Requester:
    """The requester process's aggregate: its jobs by number."""

    jobs: dict[int, Job] = Factory(dict)


# Transitions as data: which commands a job in each phase handles.
_JOB_COMMANDS: dict[str, frozenset[type]] = {
    "running": frozenset(COMMANDS) - {StartJob},
    "finished": frozenset(),
}

# ---------------------------------------------------------------- evolving


def evolve(state: Requester, event: object) -> Requester:
    """Apply one event (in place: one task owns the state) and return the state."""
    if type(event) is JobStarted:
        _job_started(state, event)
    else:
        _EVOLVERS[type(event)](state.jobs[event.job], event)  # type: ignore[attr-defined]
    return state


def _job_started(state: Requester, e: JobStarted) -> None:
    state.jobs[e.job] = Job(
        job=e.job,
        frames=e.frames,
        settings=e.settings,
        checks_escrowed=e.checks_escrowed,
        adaptive=e.adaptive,
        queue=sorted(e.frames),
    )


def _friends_joined(j: Job, e: FriendsJoined) -> None:
    checked = set(e.checked)
    for g in e.friends:
        j.friends[g.friend] = Friend(friend=g.friend, owner=g.owner, clean_run=g.clean_run, checked=g.friend in checked)
    j.granted += len(e.friends)
    j.ring = e.ring
    j.position = {f: i for i, f in enumerate(e.ring)}
    j.wanted = False


def _set_status(j: Job, friend: str, status: str) -> None:
    j.friends[friend] = _replace(j.friends[friend], status=status)


def _friend_left(j: Job, e: FriendLeft) -> None:
    _set_status(j, e.friend, "gone")


def _friend_returned(j: Job, e: FriendReturned) -> None:
    _set_status(j, e.friend, "active")


def _more_friends_wanted(j: Job, e: MoreFriendsWanted) -> None:
    j.wanted = True


def _task_assigned(j: Job, e: TaskAssigned) -> None:
    j.tasks[e.task] = Task(
        task=e.task,
        friend=e.friend,
        kind=e.kind,
        frames=e.frames,
        checks=e.checks,
        backup_of=e.backup_of,
        deadline=e.deadline,
        assigned=e.now,
    )
    j.next_task = e.task + 1
    j.live[e.task] = frozenset(e.frames)
    j.live_of[e.friend] = j.live_of.get(e.friend, frozenset()) | {e.task}
    if e.kind == "check":
        for cid in e.checks:
            c = j.checks[cid]
            j.checks[cid] = _replace(c, state=_CHECK_STEPS[(c.state, "assign")], verifier=e.friend, task=e.task)
            j.pending.pop(cid, None)
        return
    if e.kind == "render":
        taken = set(e.frames)
        j.queue = [f for f in j.queue if f not in taken]
    else:
        j.backed[e.backup_of] = e.task  # type: ignore[index]
    for frame in e.frames:
        j.holders[frame] = j.holders.get(frame, frozenset()) | {e.task}


def _requeue(j: Job, frame: int) -> None:
    """Back to the queue if nothing else will deliver it (Rule 3)."""
    if frame not in j.copy and frame not in j.final and not j.holders.get(frame):
        at = bisect.bisect_left(j.queue, frame)
        if at == len(j.queue) or j.queue[at] != frame:
            j.queue.insert(at, frame)


def _finish_task(j: Job, task: Task) -> None:
    del j.live[task.task]
    j.live_of[task.friend] = j.live_of[task.friend] - {task.task}
    j.backed.pop(task.task, None)
    if task.backup_of is not None and j.backed.get(task.backup_of) == task.task:
        del j.backed[task.backup_of]


def _unhold(j: Job, task: Task, frame: int) -> None:
    if task.kind != "check":
        j.holders[frame] = j.holders.get(frame, frozenset()) - {task.task}


def _unassign(j: Job, cid: int) -> None:
    c = j.checks[cid]
    j.checks[cid] = _replace(c, state=_CHECK_STEPS[(c.state, "unassign")], verifier=None, verifier_sha256="", task=None)
    j.pending[cid] = None


def _task_dropped(j: Job, e: TaskDropped) -> None:
    task = j.tasks[e.task]
    left = j.live[e.task]
    _finish_task(j, task)
    if task.kind == "check":
        for frame, cid in zip(task.frames, task.checks):
            if frame in left and j.checks[cid].state == "assigned" and j.checks[cid].task == task.task:
                _unassign(j, cid)
        return
    for frame in sorted(left):
        _unhold(j, task, frame)
        j.tried[frame] = j.tried.get(frame, frozenset()) | {task.friend}
        _requeue(j, frame)


def _delivered_from(j: Job, task: Task, frame: int) -> None:
    """One frame of a live task is in (good, duplicate or faulted): the task progresses."""
    left = j.live[task.task] - {frame}
    _unhold(j, task, frame)
    if left:
        j.live[task.task] = left
    else:
        _finish_task(j, task)


def _copy_received(j: Job, e: CopyReceived) -> None:
    if e.role == "late":
        return
    task = j.tasks[e.task]
    _delivered_from(j, task, e.frame)
    if e.role == "candidate":
        j.copy[e.frame] = FinalFrame(frame=e.frame, friend=e.friend, sha256=e.sha256)
        j.open_batch[e.friend] = j.open_batch.get(e.friend, ()) + (e.frame,)
        j.delivered[e.friend] = j.delivered.get(e.friend, 0) + 1
    elif e.role == "pair":
        first = j.copy[e.frame]
        j.checks[e.check] = Check(  # type: ignore[index]
            check=e.check,  # type: ignore[arg-type]
            kind="pair",
            frame=e.frame,
            subject=first.friend,
            subject_sha256=first.sha256,
            covers=(e.frame,),
            state="comparing",
            verifier=e.friend,
            verifier_sha256=e.sha256,
            task=e.task,
        )
        j.next_check = e.check + 1  # type: ignore[operator]
        j.holds[e.frame] = j.holds.get(e.frame, 0) + 1
        j.ready.pop(e.frame, None)
        j.budget_used += 1
    elif e.role == "check":
        c = j.checks[e.check]  # type: ignore[index]
        j.checks[c.check] = _replace(c, state=_CHECK_STEPS[(c.state, "copy")], verifier_sha256=e.sha256)


def _copy_faulted(j: Job, e: CopyFaulted) -> None:
    task = j.tasks[e.task]
    _delivered_from(j, task, e.frame)
    if task.kind == "check":
        cid = task.checks[task.frames.index(e.frame)]
        if j.checks[cid].state == "assigned" and j.checks[cid].task == task.task:
            _unassign(j, cid)
        return
    j.tried[e.frame] = j.tried.get(e.frame, frozenset()) | {e.friend}
    _requeue(j, e.frame)


def _checks_drawn(j: Job, e: ChecksDrawn) -> None:
    drawn = set(e.frames)
    left = tuple(f for f in j.open_batch.get(e.subject, ()) if f not in drawn)
    if left:
        j.open_batch[e.subject] = left
    else:
        j.open_batch.pop(e.subject, None)
    for offset, (frame, sha) in enumerate(zip(e.tests, e.shas)):
        cid = e.first_check + offset
        j.checks[cid] = Check(check=cid, kind="test", frame=frame, subject=e.subject, subject_sha256=sha, covers=e.frames)
        j.pending[cid] = None
    j.next_check = e.first_check + len(e.tests)
    j.next_batch = e.batch + 1
    j.budget_used += len(e.tests)
    for frame in e.frames:
        j.batch_of[frame] = e.batch
        held = j.holds.get(frame, 0) + len(e.tests)
        j.holds[frame] = held
        if held == 0:
            j.ready[frame] = None


def _comparison_made(j: Job, e: ComparisonMade) -> None:
    c = j.checks[e.check]
    field_name = {"pair": "pair", "subject": "vs_subject", "verifier": "vs_verifier"}[e.against]
    j.checks[e.check] = _replace(c, state=_CHECK_STEPS[(c.state, "compare")], **{field_name: e.figures})


def _own_render_requested(j: Job, e: OwnRenderRequested) -> None:
    c = j.checks[e.check]
    if e.purpose == "check":
        j.checks[e.check] = _replace(c, state=_CHECK_STEPS[(c.state, "own")], own=True, verifier=None)
        j.pending.pop(e.check, None)
        j.own_checks += 1
    else:
        j.checks[e.check] = _replace(c, state=_CHECK_STEPS[(c.state, "arbitrate")])
        j.arbitrations += 1


def _own_render_received(j: Job, e: OwnRenderReceived) -> None:
    c = j.checks[e.check]
    if c.state == "own":
        j.checks[e.check] = _replace(c, state=_CHECK_STEPS[(c.state, "copy")], verifier_sha256=e.sha256)
    else:
        j.checks[e.check] = _replace(c, state=_CHECK_STEPS[(c.state, "render")], arbitration_sha256=e.sha256)


_PAID = frozenset({"agreed", "subject_wrong", "calibration"})  # the verifier's render was not found wrong


def _check_resolved(j: Job, e: CheckResolved) -> None:
    c = j.checks[e.check]
    j.checks[e.check] = _replace(c, state=_CHECK_STEPS[(c.state, "void" if e.outcome == "void" else "resolve")], outcome=e.outcome)
    j.pending.pop(e.check, None)
    if e.outcome == "void":
        j.budget_used -= 1
        return
    for frame in c.covers:
        held = j.holds.get(frame, 0) - 1
        j.holds[frame] = held
        if held == 0 and frame in j.batch_of and frame in j.copy:
            j.ready[frame] = None
    subject_clean = {"agreed": True, "verifier_wrong": True, "subject_wrong": False, "both_wrong": False}.get(e.outcome)
    if subject_clean is not None:
        j.outcomes[c.subject] = j.outcomes.get(c.subject, ()) + (subject_clean,)
    if c.verifier is not None:
        if e.outcome in ("verifier_wrong", "both_wrong"):
            j.outcomes[c.verifier] = j.outcomes.get(c.verifier, ()) + (False,)
        elif e.outcome in _PAID:
            j.check_paid[c.verifier] = j.check_paid.get(c.verifier, 0) + 1
        if "close" in (e.subject_verdict, e.verifier_verdict) or e.outcome == "calibration":
            j.calibrated.add(_pair(c.subject, c.verifier))


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _cheater_evicted(j: Job, e: CheaterEvicted) -> None:
    _set_status(j, e.friend, "evicted")
    j.evictions[e.friend] = e.evidence
    j.ring = tuple(f for f in j.ring if f != e.friend)
    j.position = {f: i for i, f in enumerate(j.ring)}
    j.open_batch.pop(e.friend, None)
    for frame in e.discarded:
        del j.copy[frame]
        j.ready.pop(frame, None)
        j.batch_of.pop(frame, None)
        j.holds[frame] = 0
        j.tried[frame] = j.tried.get(frame, frozenset()) | {e.friend}
        _requeue(j, frame)
    # Its delivered test renders are void: someone else renders them again.
    for cid, c in list(j.checks.items()):
        if c.verifier == e.friend and c.state == "comparing":
            _unassign(j, cid)


def _frames_final(j: Job, e: FramesFinal) -> None:
    for ff in e.frames:
        j.final[ff.frame] = ff
        del j.copy[ff.frame]
        j.ready.pop(ff.frame, None)


def _job_finished(j: Job, e: JobFinished) -> None:
    j.phase = "finished"
    j.report = e.report


_EVOLVERS: dict[type, Callable[[Job, object], None]] = {  # type: ignore[dict-item]
    FriendsJoined: _friends_joined,
    FriendLeft: _friend_left,
    FriendReturned: _friend_returned,
    MoreFriendsWanted: _more_friends_wanted,
    TaskAssigned: _task_assigned,
    TaskDropped: _task_dropped,
    CopyReceived: _copy_received,
    CopyFaulted: _copy_faulted,
    ChecksDrawn: _checks_drawn,
    ComparisonRequested: lambda j, e: None,  # a request to the shell; the check's state says the rest
    ComparisonMade: _comparison_made,
    OwnRenderRequested: _own_render_requested,
    OwnRenderReceived: _own_render_received,
    CheckResolved: _check_resolved,
    CheaterEvicted: _cheater_evicted,
    FramesFinal: _frames_final,
    JobFinished: _job_finished,
}

# ---------------------------------------------------------------- deciding


def decide(state: Requester, command: object) -> list[object]:
    """The events that ``command`` causes, or Rejected; ``state`` is not changed."""
    handler = _DECIDERS.get(type(command))
    if handler is None:
        raise TypeError(f"the requester has no decision for {type(command).__name__}")
    if type(command) is StartJob:
        return _start(state, command)  # type: ignore[arg-type]
    job = state.jobs.get(command.job)  # type: ignore[attr-defined]
    if job is None:
        raise Rejected("unknown-job", f"job {command.job} was never started here")  # type: ignore[attr-defined]
    if type(command) not in _JOB_COMMANDS[job.phase]:
        raise Rejected("job-state", f"can't handle {type(command).__name__} when job {job.job} is {job.phase}") from None
    if not _finite(command.now):  # type: ignore[attr-defined]
        raise Rejected("bad-time", "now is a finite number")
    draft = _Draft(job.clone(), command)
    handler(draft, command)
    _settle(draft)
    return draft.events


class _Draft:
    """A decision in progress: events played on a copy of the job as they are emitted."""

    def __init__(self, job: Job, command: object) -> None:
        self.job = job
        self.now: float = command.now  # type: ignore[attr-defined]
        self.entropy: str = getattr(command, "entropy", "")
        self.events: list[object] = []

    def emit(self, event: object) -> None:
        self.events.append(event)
        _EVOLVERS[type(event)](self.job, event)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _start(state: Requester, c: StartJob) -> list[object]:
    if c.job in state.jobs:
        raise Rejected("known-job", f"job {c.job} was already started")
    if not c.frames or len(set(c.frames)) != len(c.frames) or any(not isinstance(f, int) or f < 0 for f in c.frames):
        raise Rejected("bad-frames", "a job renders one or more distinct, non-negative frame numbers")
    problems = c.settings.problems()
    if c.checks_escrowed < 0 or not _finite(c.now):
        problems.append("checks_escrowed is never negative and now is finite")
    if problems:
        raise Rejected("bad-settings", "; ".join(problems))
    s = c.settings
    adaptive = s.adaptive if s.adaptive is not None else len(c.frames) >= s.adaptive_from
    return [
        JobStarted(job=c.job, frames=tuple(c.frames), settings=s, checks_escrowed=c.checks_escrowed, adaptive=adaptive, now=c.now)
    ]


def _add_friends(d: _Draft, c: AddFriends) -> None:
    j = d.job
    names = [g.friend for g in c.friends]
    if not names or len(set(names)) != len(names) or any(not n or not g.owner for n, g in zip(names, c.friends)):
        raise Rejected("bad-friends", "a grant names one or more distinct friends, each with an owner")
    known = [n for n in names if n in j.friends]
    if known:
        raise Rejected("known-friend", f"{known} already belong to job {j.job}")
    if any(g.clean_run < 0 for g in c.friends):
        raise Rejected("bad-friends", "a clean run is never negative")
    checked = tuple(
        g.friend
        for g in c.friends
        if not j.adaptive or _circle.checked_this_job(c.entropy, g.friend, g.clean_run, j.settings.trust_after)
    )
    owners = {f: rec.owner for f, rec in j.friends.items()} | {g.friend: g.owner for g in c.friends}
    members = [f for f in owners if f not in j.friends or j.friends[f].status != "evicted"]
    ring = _circle.ring_order(c.entropy, sorted(members), owners.__getitem__)
    d.emit(FriendsJoined(job=j.job, friends=tuple(c.friends), checked=checked, ring=ring, now=c.now))


def _known_friend(j: Job, friend: str) -> Friend:
    rec = j.friends.get(friend)
    if rec is None:
        raise Rejected("unknown-friend", f"{friend!r} is not a friend of job {j.job}")
    return rec


def chunk_size(remaining: int, friends: int, max_chunk: int, min_chunk: int = 1) -> int:
    """Guided self-scheduling: ceil(remaining / 2N), raised to ``min_chunk`` but never past a
    fair share ceil(remaining / N) (every friend gets work), and at most ``max_chunk``."""
    n = max(friends, 1)
    fair = math.ceil(remaining / n)
    return max(1, min(max_chunk, fair, max(min_chunk, math.ceil(remaining / (2 * n)))))


def _deadline(j: Job, now: float, frames: int) -> float:
    s = j.settings
    return now + s.deadline_factor * (s.startup_seconds + frames * s.seconds_per_frame)


def _eligible(j: Job, subject: str) -> Callable[[str], bool]:
    owner = j.friends[subject].owner

    def eligible(candidate: str) -> bool:
        rec = j.friends[candidate]
        return (
            rec.status == "active"
            and candidate != subject
            and rec.owner != owner
            and _pair(subject, candidate) not in j.calibrated
        )

    return eligible


def _checker(j: Job, subject: str) -> str | None:
    return _circle.checker(j.ring, j.position, subject, _eligible(j, subject))


def _reserve(j: Job) -> int:
    """Budget kept for checks not drawn yet: s for each checked friend with undrawn or unfinished work."""
    s = j.settings.checks_per_friend
    return sum(
        s
        for f, rec in j.friends.items()
        if rec.checked and rec.status != "evicted" and (j.open_batch.get(f) or _renders(j, f))
    )


def _renders(j: Job, friend: str) -> bool:
    return any(j.tasks[t].kind != "check" for t in j.live_of.get(friend, ()))


def _ask(d: _Draft, c: AskForTask) -> None:
    j = d.job
    rec = _known_friend(j, c.friend)
    if rec.status == "evicted":
        return
    if rec.status == "gone":
        d.emit(FriendReturned(job=j.job, friend=c.friend, now=c.now))
    kept = 0
    for t in sorted(j.live_of.get(c.friend, ())):  # asking again means it gave up what it does not keep
        if t in c.keeping:
            kept += 1
        else:
            d.emit(TaskDropped(job=j.job, task=t, friend=c.friend, why="replaced", frames=tuple(sorted(j.live[t])), now=c.now))
    if kept > 1 or _give_checks(d, c.friend):
        return
    if not kept:
        _give_render(d, c.friend) or _give_backup(d, c.friend)
    elif len(j.queue) > len(j.active()):  # asking ahead (Rule 9): the last frames wait for idle friends
        _give_render(d, c.friend)


def _give_checks(d: _Draft, friend: str) -> bool:
    j = d.job
    mine: list[Check] = []
    verifier_of: dict[str, str | None] = {}
    for cid in j.pending:
        c = j.checks[cid]
        if c.subject not in verifier_of:
            verifier_of[c.subject] = _checker(j, c.subject)
        if verifier_of[c.subject] == friend and c.frame not in {m.frame for m in mine}:
            mine.append(c)
            if len(mine) == j.settings.max_chunk:
                break
    if not mine:
        return False
    mine.sort(key=lambda c: c.frame)  # a check task reads like any run of frames (Rule 4)
    d.emit(
        TaskAssigned(
            job=j.job,
            task=j.next_task,
            friend=friend,
            kind="check",
            frames=tuple(c.frame for c in mine),
            checks=tuple(c.check for c in mine),
            deadline=_deadline(j, d.now, len(mine)),
            now=d.now,
        )
    )
    return True


def _give_render(d: _Draft, friend: str) -> bool:
    j = d.job
    if not j.queue:
        return False
    active = j.active()
    size = chunk_size(len(j.queue), len(active), j.settings.max_chunk, j.settings.min_chunk())
    frames: list[int] = []
    for frame in j.queue:
        lost = j.tried.get(frame)
        if lost and friend in lost and any(a not in lost for a in active if a != friend):
            continue  # Rule 3: someone else should try it
        frames.append(frame)
        if len(frames) == size:
            break
    if not frames:
        return False
    d.emit(
        TaskAssigned(
            job=j.job,
            task=j.next_task,
            friend=friend,
            kind="render",
            frames=tuple(frames),
            deadline=_deadline(j, d.now, len(frames)),
            now=d.now,
        )
    )
    return True


def _late(j: Job, task: Task, now: float) -> bool:
    return now >= task.assigned + j.settings.late_after(len(task.frames))


def _give_backup(d: _Draft, friend: str) -> bool:
    """An idle friend takes a copy of the slowest late render task, within the check budget.

    Only a late task: a copy of one on time would be done no sooner and would
    keep the friend from the checks that fall due at the end of a job.
    """
    j = d.job
    if not j.settings.backups:
        return False
    in_backups = sum(len(j.live[t]) for t in j.backed.values())
    room = j.budget - j.budget_used - _reserve(j) - in_backups
    if room < 1:
        return False
    slowest: tuple[int, float, int] | None = None
    uncopied: dict[int, tuple[int, ...]] = {}
    for t, left in j.live.items():
        task = j.tasks[t]
        if task.kind != "render" or task.friend == friend or t in j.backed or not _late(j, task, d.now):
            continue
        # Only frames nobody has delivered yet: a frame with a copy needs no second backup.
        missing = tuple(sorted(f for f in left if f not in j.copy and f not in j.final))
        if not missing:
            continue
        uncopied[t] = missing
        key = (len(missing), -task.assigned, t)  # most frames missing, then the oldest
        if slowest is None or key[:2] > slowest[:2]:
            slowest = key
    if slowest is None:
        return False
    original = slowest[2]
    frames = uncopied[original][: min(room, j.settings.max_chunk)]
    d.emit(
        TaskAssigned(
            job=j.job,
            task=j.next_task,
            friend=friend,
            kind="backup",
            frames=frames,
            backup_of=original,
            deadline=_deadline(j, d.now, len(frames)),
            now=d.now,
        )
    )
    return True


def _sha_ok(sha: object) -> bool:
    return isinstance(sha, str) and 0 < len(sha) <= 128


def _deliver(d: _Draft, c: DeliverFrame) -> None:
    j = d.job
    task = j.tasks.get(c.task)
    if task is None:
        raise Rejected("unknown-task", f"task {c.task} was never assigned in job {j.job}")
    if task.friend != c.friend:
        raise Rejected("not-yours", f"task {c.task} of job {j.job} belongs to another friend")
    if c.frame not in task.frames:
        raise Rejected("not-in-task", f"frame {c.frame} is not part of task {c.task}")
    if c.ok and not _sha_ok(c.sha256):
        raise Rejected("bad-sha", "a delivered frame names its sha256")
    copy = dict(job=j.job, task=c.task, friend=c.friend, frame=c.frame, sha256=c.sha256, now=c.now)
    if c.frame not in j.live.get(c.task, ()):
        d.emit(CopyReceived(role="late", **copy))  # recorded, ignored
        return
    if not c.ok:
        d.emit(CopyFaulted(job=j.job, task=c.task, friend=c.friend, frame=c.frame, reason=c.reason or "fault", now=c.now))
        return
    if task.kind == "check":
        cid = task.checks[task.frames.index(c.frame)]
        check = j.checks[cid]
        if check.state != "assigned" or check.task != c.task:
            d.emit(CopyReceived(role="unneeded", **copy))  # the check was voided meanwhile
            return
        d.emit(CopyReceived(role="check", check=cid, **copy))
        _compare_pair(d, cid)
        return
    if c.frame in j.final:
        d.emit(CopyReceived(role="duplicate", **copy))
    elif c.frame in j.copy:
        first = j.copy[c.frame]
        room = j.budget - j.budget_used - _reserve(j)
        if first.friend != c.friend and room >= 1:
            cid = j.next_check
            d.emit(CopyReceived(role="pair", check=cid, **copy))
            _compare_pair(d, cid)
        else:
            d.emit(CopyReceived(role="duplicate", **copy))
    else:
        d.emit(CopyReceived(role="candidate", **copy))


def _compare_pair(d: _Draft, cid: int) -> None:
    """Both copies are in: identical hashes resolve at once, anything else goes to the comparator."""
    j = d.job
    c = j.checks[cid]
    if c.verifier_sha256 == c.subject_sha256:
        d.emit(ComparisonMade(job=j.job, check=cid, against="pair", figures=Figures(verdict="identical"), now=d.now))
        d.emit(CheckResolved(job=j.job, check=cid, frame=c.frame, subject=c.subject, verifier=c.verifier, outcome="agreed", now=d.now))
        return
    d.emit(
        ComparisonRequested(
            job=j.job,
            check=cid,
            frame=c.frame,
            against="pair",
            a_friend=c.subject,
            a_sha256=c.subject_sha256,
            b_friend=c.verifier,
            b_sha256=c.verifier_sha256,
        )
    )


def _figures(c: RecordComparison) -> Figures:
    if c.verdict not in VERDICTS:
        raise Rejected("bad-verdict", f"verdict is one of {VERDICTS}, not {c.verdict!r}")
    if not (_finite(c.fraction_off) and 0 <= c.fraction_off <= 1):
        raise Rejected("bad-figures", "fraction_off is a fraction")
    if not (isinstance(c.max_diff, int) and 0 <= c.max_diff <= 255 and _finite(c.max_diff)):
        raise Rejected("bad-figures", "max_diff is 0..255")
    if not isinstance(c.psnr, (int, float)) or math.isnan(c.psnr):
        raise Rejected("bad-figures", "psnr is a number")
    # Identical images have infinite PSNR; the log's canonical JSON has no infinity.
    return Figures(verdict=c.verdict, fraction_off=float(c.fraction_off), max_diff=c.max_diff, psnr=float(max(-99.0, min(c.psnr, 99.0))))


def _record_comparison(d: _Draft, c: RecordComparison) -> None:
    j = d.job
    check = j.checks.get(c.check)
    if check is None:
        raise Rejected("unknown-check", f"check {c.check} does not exist in job {j.job}")
    figures = _figures(c)
    if c.against == "pair":
        if check.state != "comparing" or check.pair is not None:
            raise Rejected("check-state", f"can't compare check {c.check} of job {j.job} in state {check.state}")
    elif c.against in ("subject", "verifier"):
        done = check.vs_subject if c.against == "subject" else check.vs_verifier
        if check.state != "judging" or done is not None or (c.against == "verifier" and check.verifier is None):
            raise Rejected("check-state", f"can't compare check {c.check} against the {c.against} in state {check.state}")
    else:
        raise Rejected("bad-against", "against is pair, subject or verifier")
    expected = {
        "pair": (check.subject_sha256, check.verifier_sha256),
        "subject": (check.arbitration_sha256, check.subject_sha256),
        "verifier": (check.arbitration_sha256, check.verifier_sha256),
    }[c.against]
    if (c.a_sha256, c.b_sha256) != expected:
        raise Rejected("stale-comparison", f"check {c.check} of job {j.job} no longer compares those copies")
    d.emit(ComparisonMade(job=j.job, check=c.check, against=c.against, figures=figures, now=c.now))
    _after_comparison(d, c.check)


def _after_comparison(d: _Draft, cid: int) -> None:
    j = d.job
    c = j.checks[cid]
    if c.state == "comparing":
        assert c.pair is not None
        if c.pair.verdict != "disagree":
            d.emit(CheckResolved(job=j.job, check=cid, frame=c.frame, subject=c.subject, verifier=c.verifier, outcome="agreed", now=d.now))
        elif c.own:  # the requester's own render already is the arbitration
            _judge(d, cid, _classify(j, c.pair), "")
        else:
            d.emit(OwnRenderRequested(job=j.job, check=cid, frame=c.frame, purpose="arbitration", now=d.now))
    elif c.state == "judging" and c.vs_subject is not None and c.vs_verifier is not None:
        _judge(d, cid, _classify(j, c.vs_subject), _classify(j, c.vs_verifier))


def _classify(j: Job, f: Figures) -> str:
    """right: agrees with the arbitration; close: within the calibration tier; wrong: a cheat."""
    if f.verdict != "disagree":
        return "right"
    s = j.settings
    if f.fraction_off <= s.calibration_fraction and f.psnr >= s.calibration_psnr:
        return "close"
    return "wrong"


def _judge(d: _Draft, cid: int, subject: str, verifier: str) -> None:
    j = d.job
    c = j.checks[cid]
    wrong = [p for p, v in ((c.subject, subject), (c.verifier, verifier)) if v == "wrong" and p is not None]
    if subject == "wrong" and verifier == "wrong":
        outcome = "both_wrong"
    elif subject == "wrong":
        outcome = "subject_wrong"
    elif verifier == "wrong":
        outcome = "verifier_wrong"
    elif "close" in (subject, verifier):
        outcome = "calibration"
    else:
        outcome = "agreed"
    d.emit(
        CheckResolved(
            job=j.job,
            check=cid,
            frame=c.frame,
            subject=c.subject,
            verifier=c.verifier,
            outcome=outcome,
            subject_verdict=subject,
            verifier_verdict=verifier,
            now=d.now,
        )
    )
    c = j.checks[cid]
    evidence = Evidence(
        check=cid,
        frame=c.frame,
        subject=c.subject,
        subject_sha256=c.subject_sha256,
        verifier=c.verifier,
        verifier_sha256=c.verifier_sha256,
        arbitration_sha256=c.arbitration_sha256 or c.verifier_sha256,
        pair=c.pair,
        vs_subject=c.vs_subject,
        vs_verifier=c.vs_verifier,
    )
    for friend in wrong:
        _evict(d, friend, evidence)


def _evict(d: _Draft, friend: str, evidence: Evidence) -> None:
    j = d.job
    if j.friends[friend].status == "evicted":
        return
    for t in sorted(j.live_of.get(friend, ())):
        d.emit(TaskDropped(job=j.job, task=t, friend=friend, why="evicted", frames=tuple(sorted(j.live[t])), now=d.now))
    for cid, c in list(j.checks.items()):
        if c.subject == friend and c.state != "resolved":
            d.emit(CheckResolved(job=j.job, check=cid, frame=c.frame, subject=friend, verifier=c.verifier, outcome="void", now=d.now))
    discarded = tuple(sorted(f for f, copy in j.copy.items() if copy.friend == friend))
    d.emit(CheaterEvicted(job=j.job, friend=friend, evidence=evidence, discarded=discarded, now=d.now))


def _record_own_render(d: _Draft, c: RecordOwnRender) -> None:
    j = d.job
    check = j.checks.get(c.check)
    if check is None:
        raise Rejected("unknown-check", f"check {c.check} does not exist in job {j.job}")
    if not _sha_ok(c.sha256):
        raise Rejected("bad-sha", "an own render names its sha256")
    if check.state not in ("own", "arbitrating"):
        raise Rejected("check-state", f"can't take an own render for check {c.check} of job {j.job} in state {check.state}")
    d.emit(OwnRenderReceived(job=j.job, check=c.check, sha256=c.sha256, now=c.now))
    if check.state == "own":
        _compare_pair(d, c.check)
        return
    for against, friend, sha in (("subject", check.subject, check.subject_sha256), ("verifier", check.verifier, check.verifier_sha256)):
        if sha == c.sha256:
            d.emit(ComparisonMade(job=j.job, check=c.check, against=against, figures=Figures(verdict="identical"), now=c.now))
        else:
            d.emit(
                ComparisonRequested(
                    job=j.job, check=c.check, frame=check.frame, against=against,
                    a_friend=None, a_sha256=c.sha256, b_friend=friend, b_sha256=sha,
                )
            )
    _after_comparison(d, c.check)


def _tick(d: _Draft, c: Tick) -> None:
    j = d.job
    for t in sorted(j.live):
        task = j.tasks[t]
        if task.deadline <= c.now:
            d.emit(TaskDropped(job=j.job, task=t, friend=task.friend, why="deadline", frames=tuple(sorted(j.live[t])), now=c.now))


def _drop_friend(d: _Draft, c: DropFriend) -> None:
    j = d.job
    rec = _known_friend(j, c.friend)
    if rec.status != "active":
        return
    for t in sorted(j.live_of.get(c.friend, ())):
        d.emit(TaskDropped(job=j.job, task=t, friend=c.friend, why="gone", frames=tuple(sorted(j.live[t])), now=c.now))
    d.emit(FriendLeft(job=j.job, friend=c.friend, now=c.now))


def _return_task(d: _Draft, c: ReturnTask) -> None:
    j = d.job
    task = j.tasks.get(c.task)
    if task is None or task.friend != c.friend:
        raise Rejected("unknown-task", f"task {c.task} of job {j.job} is not {c.friend!r}'s")
    if c.task in j.live:
        d.emit(TaskDropped(job=j.job, task=c.task, friend=c.friend, why="returned", frames=tuple(sorted(j.live[c.task])), now=c.now))


_DECIDERS: dict[type, Callable[..., object]] = {
    StartJob: _start,
    AddFriends: _add_friends,
    AskForTask: _ask,
    DeliverFrame: _deliver,
    RecordComparison: _record_comparison,
    RecordOwnRender: _record_own_render,
    Tick: _tick,
    DropFriend: _drop_friend,
    ReturnTask: _return_task,
}

# ---------------------------------------------------------------- policies


def _settle(d: _Draft) -> None:
    """What follows from the decision: run the policies until none has more to say."""
    while True:
        before = len(d.events)
        _close_batches(d)
        _orphan_checks(d)
        _finalise(d)
        _want_friends(d)
        _finish(d)
        if len(d.events) == before or d.job.phase == "finished":
            return


def _close_batches(d: _Draft) -> None:
    """A batch closes when full ("batch"), when its friend is idle with nothing queued, or gone."""
    j = d.job
    s = j.settings
    for friend, frames in list(j.open_batch.items()):
        if not frames:
            continue
        rec = j.friends[friend]
        full = s.check_timing == "batch" and len(frames) >= s.batch_size
        idle = not j.queue and not _renders(j, friend)
        if not (full or idle or rec.status == "gone"):
            continue
        if full:
            frames = frames[: s.batch_size]
        want = s.checks_per_friend if rec.checked else 0
        k = max(0, min(want, len(frames), j.budget - j.budget_used))
        tests = _circle.sample(d.entropy, f"{j.job}/{friend}/{j.next_batch}", frames, k)
        d.emit(
            ChecksDrawn(
                job=j.job,
                subject=friend,
                batch=j.next_batch,
                frames=frames,
                tests=tests,
                shas=tuple(j.copy[f].sha256 for f in tests),
                first_check=j.next_check,
                now=d.now,
            )
        )


def _orphan_checks(d: _Draft) -> None:
    """Rule 5: a check no live friend may render is rendered by the requester."""
    j = d.job
    if not j.pending:
        return
    verifier_of: dict[str, str | None] = {}
    for cid in list(j.pending):
        c = j.checks[cid]
        if c.subject not in verifier_of:
            verifier_of[c.subject] = _checker(j, c.subject)
        if verifier_of[c.subject] is None:
            d.emit(OwnRenderRequested(job=j.job, check=cid, frame=c.frame, purpose="check", now=d.now))


def _finalise(d: _Draft) -> None:
    j = d.job
    if j.ready:
        d.emit(FramesFinal(job=j.job, frames=tuple(j.copy[f] for f in sorted(j.ready)), now=d.now))


def _want_friends(d: _Draft) -> None:
    j = d.job
    if j.wanted or j.granted == 0 or j.active():
        return
    if j.queue or j.live or j.copy or j.pending:
        evicted = tuple(sorted(j.evictions))
        d.emit(MoreFriendsWanted(job=j.job, count=max(1, len(j.friends) - len(evicted)), exclude=evicted, now=d.now))


def _finish(d: _Draft) -> None:
    j = d.job
    if len(j.final) == len(j.frames):
        d.emit(JobFinished(job=j.job, report=_report(j), now=d.now))


def _report(j: Job) -> JobReport:
    frame_points: dict[str, int] = {}
    for ff in j.final.values():
        frame_points[ff.friend] = frame_points.get(ff.friend, 0) + 1
    evicted = set(j.evictions)
    check_points: dict[str, int] = {}
    room = j.budget  # Rule 7; drawing already kept within it, this only makes it plain
    for friend, points in sorted(j.check_paid.items()):
        if friend not in evicted:
            check_points[friend] = min(points, room)
            room -= check_points[friend]
    payouts = {
        f: frame_points.get(f, 0) + check_points.get(f, 0)
        for f in sorted(set(frame_points) | set(check_points))
        if f not in evicted and frame_points.get(f, 0) + check_points.get(f, 0) > 0
    }
    return JobReport(
        job=j.job,
        frames=len(j.frames),
        payouts=payouts,
        frame_points=frame_points,
        check_points=check_points,
        check_outcomes=dict(sorted(j.outcomes.items())),
        evictions=dict(j.evictions),
        calibrations=tuple(sorted(j.calibrated)),
        arbitrations=j.arbitrations,
        own_checks=j.own_checks,
        escrow=len(j.frames) + j.budget,
    )


# ----------------------------------------------------------------- queries


def _job(state: Requester, job: int) -> Job:
    try:
        return state.jobs[job]
    except KeyError:
        raise Rejected("unknown-job", f"job {job} was never started here") from None


def progress(state: Requester, job: int) -> tuple[FriendProgress, ...]:
    """Per friend: copies delivered, pending and final, checks paid, status. O(M)."""
    j = _job(state, job)
    pending: dict[str, int] = {}
    final: dict[str, int] = {}
    for ff in j.copy.values():
        pending[ff.friend] = pending.get(ff.friend, 0) + 1
    for ff in j.final.values():
        final[ff.friend] = final.get(ff.friend, 0) + 1
    return tuple(
        FriendProgress(
            friend=f,
            owner=rec.owner,
            status=rec.status,
            delivered=j.delivered.get(f, 0),
            pending=pending.get(f, 0),
            final=final.get(f, 0),
            checks_paid=j.check_paid.get(f, 0),
            evicted=rec.status == "evicted",
        )
        for f, rec in j.friends.items()
    )


def final_frames(state: Requester, job: int) -> tuple[FinalFrame, ...]:
    """Final frames in the order they became final: serve these (and only these) to the client."""
    return tuple(_job(state, job).final.values())


def open_frames(state: Requester, job: int) -> tuple[int, ...]:
    """Frames not final yet, in frame order."""
    j = _job(state, job)
    return tuple(f for f in j.frames if f not in j.final)


def outlook(state: Requester, job: int, friend: str) -> str:
    """For a friend that got no task: "work" (it holds one), "wait", "done" or "evicted"."""
    j = _job(state, job)
    rec = j.friends.get(friend)
    if rec is None:
        return "done"
    if rec.status == "evicted":
        return "evicted"
    if j.phase == "finished":
        return "done"
    return "work" if j.live_of.get(friend) else "wait"
