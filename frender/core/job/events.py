"""The job's events (facts, in the log) and the records and words they carry.

Invariants: a tag names one event class forever (renaming a class never breaks a
log); every word an event carries is a ``StrEnum`` member whose value is the
string old logs hold, so logged bodies stay byte-identical.
"""

from __future__ import annotations

import math
from typing import ClassVar

from attrs import Factory, field, frozen

from frender.core.job._tiles import TileGrid
from frender.core.job._words import (  # re-exported: the events name their words here
    VERDICTS,
    Against,
    CheckKind,
    CheckTiming,
    DropReason,
    Failure,
    Judgement,
    Outcome,
    Purpose,
    Role,
    TaskKind,
    Verdict,
)

__all__ = [
    # words
    "CheckTiming",
    "TaskKind",
    "CheckKind",
    "Role",
    "DropReason",
    "Verdict",
    "VERDICTS",
    "Against",
    "Purpose",
    "Outcome",
    "Judgement",
    "Failure",
    # records
    "OMIT",
    "WINDOW_GRID",
    "CropWindow",
    "JobSettings",
    "GrantedFriend",
    "Figures",
    "Evidence",
    "FinalFrame",
    "JobReport",
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
    "JobCancelled",
    "RenderFailed",
    "JobFailed",
    "FramesRecalled",
    "ChecksReopened",
    "CropsUnequal",
    "EVENTS",
]


# ---------------------------------------------------------------- records

# attrs field metadata: the codec leaves the field out of a body while it holds its default, so a
# field added to a logged record keeps the bodies written before it byte-identical.
OMIT = {"omit_if_default": True}
WINDOW_GRID = 64  # crop windows are placed on a grid of 1/64 of the frame's width and height


@frozen(kw_only=True)
class CropWindow:
    """A secret window of a frame in grid units (``WINDOW_GRID`` per side), from its top-left corner.

    The shell turns it into pixels (edges rounded outwards, so it never covers less than
    ``w * h / WINDOW_GRID**2`` of the frame), then pads and aligns it for rendering.
    """

    x: int
    y: int
    w: int
    h: int

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(left, top, width, height)`` in pixels of a ``width`` x ``height`` frame."""
        g = WINDOW_GRID
        left, top = self.x * width // g, self.y * height // g
        right, bottom = -(-(self.x + self.w) * width // g), -(-(self.y + self.h) * height // g)
        return left, top, right - left, bottom - top


@frozen(kw_only=True)
class JobSettings:
    """How a job is scheduled and checked; fixed when the job starts."""

    checks_per_friend: int = 1  # s: test frames per share ("end") or per batch ("batch")
    check_timing: CheckTiming = CheckTiming.BATCH
    batch_size: int = 8  # frames per batch when check_timing is "batch"
    adaptive: bool | None = None  # None: on for jobs of at least adaptive_from frames
    adaptive_from: int = 100
    trust_after: int = 10  # clean checks before a friend is checked with probability 1/run
    max_chunk: int = 8  # frames per task at most
    seconds_per_frame: float = 60.0  # render time estimate, for deadlines
    startup_seconds: float = 10.0  # Blender start-up and scene load per task
    deadline_factor: float = 3.0  # deadline = factor x estimated task time
    backups: bool = True  # idle friends take copies of the slowest tasks at the end
    # Arbitration vs a party within this tier is calibration, not a cheat: it sits above every lazy render
    # measured (a quarter of the samples, denoised: 0.09% of pixels beyond 4/255 at 52-56 dB), so it never
    # excuses one; honest renders of one profile never reach the arbitration at all (docs/verification.md).
    calibration_fraction: float = 0.0005
    calibration_psnr: float = 58.0
    # A crop check on every delivered frame (a secret window rendered by another friend); False: the
    # full-frame test frames drawn per batch above. New settings are left out of logged bodies at their
    # defaults, so logs written before them re-encode byte for byte.
    crop_checks: bool = field(default=True, metadata=OMIT)
    trusted_from: int = field(default=3, metadata=OMIT)  # the master's reputation at which a friend is trusted
    # The requester's own spot checks (crop checks): on every probationary friend's batch, and on a trusted
    # friend's with probability max(spot_floor, spot_scale / (1 + reputation)); at most one per batch.
    # Renders are handed out as runs from a random place in the queue, not lowest frame first (Rule 12).
    random_order: bool = field(default=True, metadata=OMIT)
    spot_floor: float = field(default=0.05, metadata=OMIT)
    spot_scale: float = field(default=1.0, metadata=OMIT)
    # Rule 13: a friend holds at most this many batches of frames no check has passed yet (live and
    # delivered, not final), probationary and trusted; 0: no limit. A fast forger cannot take the queue.
    unverified_batches: int = field(default=2, metadata=OMIT)
    unverified_batches_trusted: int = field(default=4, metadata=OMIT)
    # Coalitions (Rules 14-16). Each friend's first batch in a job is spot-checked; a trusted friend's later
    # batches with probability max(spot_floor, min(1, spot_trust_scale / (1 + reputation))): every batch until
    # its reputation (own checks passed) reaches spot_trust_scale, half of them at twice that, the floor at
    # 20 times that. A spot judges spots_per_batch test frames of the batch. With anchored_finality a frame vouched by peers
    # is final only once its author and every friend that vouched for it passed a requester's check in this job.
    spot_first: bool = field(default=True, metadata=OMIT)
    spot_trust_scale: float = field(default=16.0, metadata=OMIT)
    spots_per_batch: int = field(default=2, metadata=OMIT)
    # True: a spot window is rendered by the requester alone, instead of a peer's window it would judge again,
    # the same anchor for one window's work, not two (bench/attacks.py measures it); False: both, as before.
    spot_alone: bool = field(default=False, metadata=OMIT)
    anchored_finality: bool = field(default=True, metadata=OMIT)
    # A friend whose windows only friends of fewer than spot_all_below owners may check (one account vouching for all
    # it renders: two colluders alone) has every window judged by the requester too; 0 turns this off.
    spot_all_below: int = field(default=2, metadata=OMIT)
    # The requester's own renders over untrusted friends' frames, per account (owner) and per job; 0: auto,
    # ceil(M / batch_size) + 4 per account and 2 x ceil(M / batch_size) + 8 per job. Past either bound, those
    # friends get no more frames to render (the job waits for trusted friends and asks the master for them).
    own_untrusted_account: int = field(default=0, metadata=OMIT)
    own_untrusted_job: int = field(default=0, metadata=OMIT)
    # Rule 18: a job that asked the master for friends because none it has can go on (all gone, caught, or
    # untrusted past the bounds above) fails once this many seconds pass with no friend taking frames from it.
    starved_after: float = field(default=600.0, metadata=OMIT)
    # Rule 20: a still in tiles. The job's "frames" are work units ``frame * tiles.count + tile``, each one task of
    # one window (so max_chunk is 1), checked inside its tile and paid by its share of the frame's area. None: whole
    # frames, as every job before tiles (left out of logged bodies, so they re-encode byte for byte).
    tiles: TileGrid | None = field(default=None, metadata=OMIT)
    # Rule 20: an animation in tiles gives whole frames (every tile of one frame, one task) while the queue holds a
    # whole frame for each active friend, and single tiles after: the tail of the job is shared out in tiles. False:
    # one tile a task from the start (a still, and every tiled job before it).
    whole_frames_first: bool = field(default=False, metadata=OMIT)
    # Rule 20: the window of a tile's crop check the requester renders alone (a spot, or beyond the escrow) is drawn
    # from the job's secret seed (JobStarted.seed) and the tile alone, so the requester renders it beside the friend's
    # tile instead of after it; a window a friend renders is drawn when the check is, as before. False: every window
    # drawn with its check (every job before it).
    windows_ahead: bool = field(default=False, metadata=OMIT)
    # Rule 10: a friend's check goes to the eligible checker (trusted first, as before) with the fewest checks owed in
    # the job, ties broken by the draw, so no checker holds three of a still's eight checks while others hold none.
    # False: the checker the draw picks at random (every job before it).
    even_checkers: bool = field(default=False, metadata=OMIT)

    def problems(self) -> list[str]:
        out = []
        if self.tiles is not None:
            out += self.tiles.problems()
            if self.max_chunk != 1:
                out.append("a tiled job's tasks are one tile or one whole frame each (max_chunk 1)")
        elif self.whole_frames_first:
            out.append("whole_frames_first is for a job in tiles")
        if self.checks_per_friend < 0:
            out.append("checks_per_friend is never negative")
        if self.check_timing not in tuple(CheckTiming):
            out.append("check_timing is 'end' or 'batch'")
        if self.batch_size < 1 or self.max_chunk < 1 or self.trust_after < 0:
            out.append("batch_size and max_chunk are at least 1")
        if not (self.seconds_per_frame > 0 and self.startup_seconds >= 0 and self.deadline_factor >= 1):
            out.append("time estimates are positive and deadline_factor at least 1")
        if not (0 <= self.calibration_fraction <= 1):
            out.append("calibration_fraction is a fraction")
        if self.trusted_from < 0:
            out.append("trusted_from is never negative")
        if self.unverified_batches < 0 or self.unverified_batches_trusted < 0:
            out.append("unverified_batches are never negative")
        if not (0 <= self.spot_floor <= 1 and self.spot_scale >= 0):
            out.append("spot_floor is a fraction and spot_scale never negative")
        if self.spot_trust_scale < 0 or self.spots_per_batch < 1 or self.spot_all_below < 0:
            out.append("spot_trust_scale is never negative and spots_per_batch at least 1")
        if self.own_untrusted_account < 0 or self.own_untrusted_job < 0:
            out.append("own_untrusted_account and own_untrusted_job are never negative (0: automatic)")
        if not self.starved_after > 0:
            out.append("starved_after is a positive number of seconds")
        return out

    def own_untrusted_bounds(self, frames: int) -> tuple[int, int]:
        """The requester's own renders over untrusted friends' frames: (per account, per job) for a job of ``frames``."""
        batches = math.ceil(frames / self.batch_size) * max(1, self.spots_per_batch // 2)  # set for 2 spot windows a batch
        return self.own_untrusted_account or batches + 4, self.own_untrusted_job or 2 * batches + 8

    def min_chunk(self) -> int:
        """Frames a task needs so that Blender's start-up costs at most half a frame's time per frame."""
        return max(1, min(self.max_chunk, math.ceil(2 * self.startup_seconds / self.seconds_per_frame)))

    def deadline(self, now: float, frames: int) -> float:
        """When a task of ``frames`` frames handed out at ``now`` is given up: a factor over its estimate."""
        return now + self.deadline_factor * (self.startup_seconds + frames * self.seconds_per_frame)

    def late_after(self, frames: int) -> float:
        """Seconds after which a task of ``frames`` frames is late: half as long again as its estimate,
        counting one frame more for a task asked for ahead (it starts once the frame in hand is done)."""
        return 1.5 * (self.startup_seconds + (frames + 1) * self.seconds_per_frame)

    def checks_to_escrow(self, frames: int, friends: int) -> int:
        """The ``checks_per_friend`` to ask the master to escrow for this job (per friend granted)."""
        if self.crop_checks:  # every frame, plus the backups' pairs; checks_per_friend=0 turns checking off
            return math.ceil(frames / max(friends, 1)) + 1 if self.checks_per_friend else 0
        if self.check_timing == CheckTiming.END:
            return self.checks_per_friend
        share = math.ceil(frames / max(friends, 1))
        return self.checks_per_friend * (math.ceil(share / self.batch_size) + 1)


@frozen(kw_only=True)
class GrantedFriend:
    friend: str
    owner: str
    clean_run: int = 0  # consecutive clean checks, from the master's FriendRecord
    reputation: int = field(default=0, metadata=OMIT)  # the master's: the requester's own checks passed in a row


@frozen(kw_only=True)
class Figures:
    """One comparison as the comparator measured it, on decoded pixels."""

    verdict: Verdict
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
    vs_frame: Figures | None = field(default=None, metadata=OMIT)  # a crop check: the requester's whole frame against the subject's (Rule 19)


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
    spot_checks: int = field(default=0, metadata=OMIT)  # the requester's own crop renders over agreed checks
    # What the master needs to fine a caught friend's owner beyond this job's share: each caught friend's
    # owner, the frames the requester found it forged (its copy, or a window it vouched with), the points it
    # forfeited here (copies it delivered plus checks it rendered: what the escrow kept from it), and the
    # frames recalled after being final (served to the client, then withdrawn).
    caught_owners: dict[str, str] = field(default=Factory(dict), metadata=OMIT)
    forged: dict[str, tuple[int, ...]] = field(default=Factory(dict), metadata=OMIT)
    forfeited: dict[str, int] = field(default=Factory(dict), metadata=OMIT)
    recalled: tuple[int, ...] = field(default=(), metadata=OMIT)


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
    seed: str = field(default="", metadata=OMIT)  # the job's secret seed of windows drawn ahead (JobSettings.windows_ahead)


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
    kind: TaskKind
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
    why: DropReason
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
    role: Role
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
    windows: tuple[CropWindow, ...] = field(default=(), metadata=OMIT)  # crop checks: one per test frame
    draws: tuple[int, ...] = field(default=(), metadata=OMIT)  # crop checks: the random draw choosing each checker
    spots: tuple[int, ...] = field(default=(), metadata=OMIT)  # test frames the requester also renders (spot checks)
    own: tuple[int, ...] = field(default=(), metadata=OMIT)  # crop checks beyond the escrowed budget: the requester renders them, unpaid


@frozen(kw_only=True)
class ComparisonRequested:
    """Compare copy A (the subject's, or the arbitration) with copy B. ``None`` friend: the requester."""

    tag: ClassVar[str] = "comparison_requested.v1"
    job: int
    check: int
    frame: int
    against: Against
    a_friend: str | None
    a_sha256: str
    b_friend: str | None
    b_sha256: str


@frozen(kw_only=True)
class ComparisonMade:
    tag: ClassVar[str] = "comparison_made.v1"
    job: int
    check: int
    against: Against
    figures: Figures
    now: float


@frozen(kw_only=True)
class OwnRenderRequested:
    tag: ClassVar[str] = "own_render_requested.v1"
    job: int
    check: int
    frame: int
    purpose: Purpose
    now: float


@frozen(kw_only=True)
class OwnRenderReceived:
    tag: ClassVar[str] = "own_render_received.v1"
    job: int
    check: int
    sha256: str
    now: float
    whole: bool = field(default=False, metadata=OMIT)  # the whole frame of a crop check (Rule 19), not its window


@frozen(kw_only=True)
class CropsUnequal:
    """Rule 19: a crop check's window disagreed with its subject's frame, but the requester's own whole frame
    agrees with that frame: the difference is the engine's (how it renders a border-cropped window), not the
    friend's. Nobody is evicted for it, and the job checks whole frames from here on."""

    tag: ClassVar[str] = "crops_unequal.v1"
    job: int
    check: int
    frame: int
    subject: str
    window: Figures  # the window against the subject's frame: how far the engine's crop is from its frame
    whole: Figures  # the requester's whole frame against the subject's: agreed
    now: float


@frozen(kw_only=True)
class CheckResolved:
    tag: ClassVar[str] = "check_resolved.v1"
    job: int
    check: int
    frame: int
    subject: str
    verifier: str | None
    outcome: Outcome
    subject_verdict: Judgement = Judgement.NONE
    verifier_verdict: Judgement = Judgement.NONE
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


@frozen(kw_only=True)
class JobCancelled:
    """The submitter stopped the job. ``report`` pays what was earned so far (final frames, agreeing
    checks); the master refunds the rest of the escrow when it closes the job."""

    tag: ClassVar[str] = "job_cancelled.v1"
    job: int
    report: JobReport
    now: float


@frozen(kw_only=True)
class RenderFailed:
    """A friend's Blender could not render the task's file, and said why (handed back with the task)."""

    tag: ClassVar[str] = "render_failed.v1"
    job: int
    task: int
    friend: str
    error: str  # Blender's one-line reason, as the friend reported it (bounded)
    now: float


@frozen(kw_only=True)
class FramesRecalled:
    """Unravelling (Rule 15): ``friend`` was caught, so frames that were final on its word are withdrawn.
    ``requeued``: its own copies, rendered again by others; ``held``: others' copies it vouched for, final again
    only once the requester's render of their window agrees (``ChecksReopened``). Tell the client to replace them."""

    tag: ClassVar[str] = "frames_recalled.v1"
    job: int
    friend: str
    requeued: tuple[int, ...]
    held: tuple[int, ...]
    now: float


@frozen(kw_only=True)
class JobFailed:
    """The job stops, over like a cancel: ``report`` pays what was earned. ``cause`` "render": friends of different
    owners (or all of them) could not render the file for the same reason, ``error``; nobody is evicted or fined for
    it. "starved" (Rule 18): no friend could go on with it and none came in time; ``error`` says why."""

    tag: ClassVar[str] = "job_failed.v1"
    job: int
    error: str
    report: JobReport
    now: float
    cause: Failure = field(default=Failure.RENDER, metadata=OMIT)  # logs from before starved jobs failed: render errors


@frozen(kw_only=True)
class ChecksReopened:
    """Unravelling (Rule 15): agreed peer checks that ``friend`` (caught) took part in, judged again by the
    requester's own render of the same window: checks ``first_check``... copy ``of`` in order; ``holds``: the
    frames whose finality waits on them (the rest were requeued: the checks judge the peer only)."""

    tag: ClassVar[str] = "checks_reopened.v1"
    job: int
    friend: str
    of: tuple[int, ...]
    first_check: int
    holds: tuple[int, ...]
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
    JobCancelled,
    RenderFailed,
    JobFailed,
    FramesRecalled,
    ChecksReopened,
    CropsUnequal,
)
