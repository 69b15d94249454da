"""Checks: test frames drawn over delivered batches, the circle that renders them, judging and eviction (Rules 4-6).

Invariants: a friend is never checked by itself, a friend of its owner, or a
friend it was found mis-calibrated against; test frames are drawn only after
their subject delivered them, and a check task reads like any render task; a
party is evicted only when its image is far from the requester's own render.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import Factory, define, frozen
from attrs import evolve as _replace

from frender.core._decider import Rejected
from frender.core.job import _unravel
from frender.core.job._draws import checker, close_batches, give_checks, orphan_checks
from frender.core.job._states import CHECK, FRIEND, CheckState, Step
from frender.core.job.commands import RecordComparison, RecordOwnRender
from frender.core.job.events import (
    VERDICTS,
    Against,
    CheaterEvicted,
    CheckKind,
    CheckResolved,
    ChecksDrawn,
    ChecksReopened,
    ComparisonMade,
    ComparisonRequested,
    CopyFaulted,
    CropsUnequal,
    CopyReceived,
    CropWindow,
    DropReason,
    Evidence,
    Figures,
    FriendsJoined,
    Judgement,
    Outcome,
    OwnRenderReceived,
    OwnRenderRequested,
    Purpose,
    Role,
    TaskAssigned,
    TaskDropped,
    TaskKind,
    Verdict,
)

if TYPE_CHECKING:
    from frender.core.job._job import Draft, Job

__all__ = [
    "Check", "Checks", "checker", "close_batches", "orphan_checks", "give_checks", "compare_pair", "record_comparison", "record_own_render",
    "anchoring_on", "EVOLVERS",
]


@frozen(kw_only=True)
class Check:
    check: int
    kind: CheckKind
    frame: int
    subject: str
    subject_sha256: str
    covers: tuple[int, ...]  # frames whose finality waits on this check
    state: CheckState = CheckState.PENDING
    verifier: str | None = None  # None with own=True: the requester renders
    own: bool = False
    verifier_sha256: str = ""
    task: int | None = None
    arbitration_sha256: str = ""
    window: CropWindow | None = None  # crop checks: the secret window the verifier renders
    draw: int = 0  # crop checks: the random draw that picks the verifier
    spot: bool = False  # the requester renders the window too, even when the pair agrees (Rule 11)
    by_requester: bool = False  # drawn beyond the escrowed budget: only the requester renders it (Rule 7)
    reopened: bool = False  # an agreed check judged again by the requester (Rule 15): unpaid, never drawn on the budget
    pair: Figures | None = None
    vs_subject: Figures | None = None
    vs_verifier: Figures | None = None
    outcome: Outcome | None = None
    frame_sha256: str = ""  # Rule 19: the requester's own whole frame, when a window found the subject wrong
    vs_frame: Figures | None = None


@define(kw_only=True)
class Checks:
    by_number: dict[int, Check] = Factory(dict)
    pending: dict[int, None] = Factory(dict)  # checks waiting for a verifier, oldest first
    ring: tuple[str, ...] = ()
    position: dict[str, int] = Factory(dict)
    open_batch: dict[str, tuple[int, ...]] = Factory(dict)  # friend -> delivered frames not drawn over yet
    calibrated: set[tuple[str, str]] = Factory(set)  # pairs never formed again
    evictions: dict[str, Evidence] = Factory(dict)
    next_check: int = 1
    next_batch: int = 1
    arbitrations: int = 0
    own_checks: int = 0
    spot_checks: int = 0  # arbitrations of agreed pairs: the requester's own spot checks
    # Rule 14: friends the requester's own render found right in this job, and those it is judging now.
    anchored: set[str] = Factory(set)
    anchoring: set[str] = Factory(set)
    spotted: set[str] = Factory(set)  # friends whose batch already drew a spot check in this job
    forged: dict[str, tuple[int, ...]] = Factory(dict)  # friend -> frames the requester found it wrong on
    # Rule 16: the requester's own renders over untrusted friends' frames, per owner and in all.
    own_untrusted_of: dict[str, int] = Factory(dict)
    own_untrusted: int = 0

    def clone(self) -> Checks:
        return Checks(
            by_number=self.by_number.copy(), pending=self.pending.copy(), ring=self.ring, position=self.position.copy(),
            open_batch=self.open_batch.copy(), calibrated=self.calibrated.copy(), evictions=self.evictions.copy(),
            next_check=self.next_check, next_batch=self.next_batch, arbitrations=self.arbitrations, own_checks=self.own_checks,
            spot_checks=self.spot_checks, anchored=self.anchored.copy(), anchoring=self.anchoring.copy(), spotted=self.spotted.copy(),
            forged=self.forged.copy(), own_untrusted_of=self.own_untrusted_of.copy(), own_untrusted=self.own_untrusted,
        )


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


# ---------------------------------------------------------------- comparing and judging


def compare_pair(d: Draft, cid: int) -> None:
    """Both copies are in: identical hashes resolve at once, anything else goes to the comparator."""
    j = d.job
    c = j.checks.by_number[cid]
    if c.verifier_sha256 == c.subject_sha256:
        d.emit(ComparisonMade(job=j.job, check=cid, against=Against.PAIR, figures=Figures(verdict=Verdict.IDENTICAL), now=d.now))
        _after_comparison(d, cid)
        return
    d.emit(
        ComparisonRequested(
            job=j.job, check=cid, frame=c.frame, against=Against.PAIR,
            a_friend=c.subject, a_sha256=c.subject_sha256, b_friend=c.verifier, b_sha256=c.verifier_sha256,
        )
    )


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _figures(c: RecordComparison) -> Figures:
    if c.verdict not in VERDICTS:
        raise Rejected("bad-verdict", f"verdict is one of {tuple(str(v) for v in VERDICTS)}, not {c.verdict!r}")
    if not (_finite(c.fraction_off) and 0 <= c.fraction_off <= 1):
        raise Rejected("bad-figures", "fraction_off is a fraction")
    if not (isinstance(c.max_diff, int) and 0 <= c.max_diff <= 255):
        raise Rejected("bad-figures", "max_diff is 0..255")
    if not isinstance(c.psnr, (int, float)) or math.isnan(c.psnr):
        raise Rejected("bad-figures", "psnr is a number")
    # Identical images have infinite PSNR; the log's canonical JSON has no infinity.
    return Figures(verdict=Verdict(c.verdict), fraction_off=float(c.fraction_off), max_diff=c.max_diff, psnr=float(max(-99.0, min(c.psnr, 99.0))))


_COMPARE = {
    Against.PAIR: Step.COMPARE_PAIR, Against.SUBJECT: Step.COMPARE_SUBJECT, Against.VERIFIER: Step.COMPARE_VERIFIER,
    Against.FRAME: Step.COMPARE_FRAME,
}


def _known_check(j: Job, cid: int) -> Check:
    check = j.checks.by_number.get(cid)
    if check is None:
        raise Rejected("unknown-check", f"check {cid} does not exist in job {j.job}")
    return check


def record_comparison(d: Draft, c: RecordComparison) -> None:
    j = d.job
    check = _known_check(j, c.check)
    figures = _figures(c)
    if c.against not in _COMPARE:
        raise Rejected("bad-against", "against is pair, subject, verifier or frame")
    CHECK.next(check.state, _COMPARE[Against(c.against)], j.job, "check", c.check)
    expected = {
        Against.PAIR: (check.subject_sha256, check.verifier_sha256),
        Against.SUBJECT: (check.arbitration_sha256, check.subject_sha256),
        Against.VERIFIER: (check.arbitration_sha256, check.verifier_sha256),
        Against.FRAME: (check.frame_sha256, check.subject_sha256),
    }[Against(c.against)]
    if (c.a_sha256, c.b_sha256) != expected:
        raise Rejected("stale-comparison", f"check {c.check} of job {j.job} no longer compares those copies")
    d.emit(ComparisonMade(job=j.job, check=c.check, against=Against(c.against), figures=figures, now=c.now))
    _after_comparison(d, c.check)


def _after_comparison(d: Draft, cid: int) -> None:
    j = d.job
    c = j.checks.by_number[cid]
    if c.state == CheckState.COMPARED:
        assert c.pair is not None
        if c.pair.verdict != Verdict.DISAGREE and (c.own or not (c.spot or _unanchored(j, c))):
            _resolve(d, c, Outcome.AGREED)
        elif c.own:  # the requester's own render already is the arbitration
            _judge(d, cid, _classify(j, c.pair), Judgement.NONE)
        elif c.pair.verdict == Verdict.DISAGREE and c.window is not None and not j.settings.crop_checks:
            # Rule 19: this job's windows were found unequal to its frames, so a window says nothing of its
            # subject: only the requester's whole frame can.
            _frame(d, c)
        else:
            d.emit(OwnRenderRequested(job=j.job, check=cid, frame=c.frame, purpose=Purpose.ARBITRATION, now=d.now))
    elif c.state == CheckState.JUDGED:
        assert c.vs_subject is not None and c.vs_verifier is not None
        _judge(d, cid, _classify(j, c.vs_subject), _classify(j, c.vs_verifier))
    elif c.state == CheckState.FRAME_JUDGED:
        _judge_frame(d, c)


def anchoring_on(j: Job) -> bool:
    """Rule 14 applies: crop checks on every frame, and peer agreement is provisional until anchored."""
    s = j.settings
    return s.anchored_finality and s.crop_checks and s.checks_per_friend > 0


def _unanchored(j: Job, c: Check) -> bool:
    """Rule 14: an agreed peer crop check with a party the requester has not yet found right in this job (nor
    is judging now) is arbitrated too, so the friends a frame's finality rests on are each checked early."""
    if c.verifier is None or c.window is None or not anchoring_on(j):
        return False
    ch = j.checks
    return any(p not in ch.anchored and p not in ch.anchoring for p in (c.subject, c.verifier))


def _resolve(d: Draft, c: Check, outcome: Outcome, subject: Judgement = Judgement.NONE, verifier: Judgement = Judgement.NONE) -> None:
    d.emit(
        CheckResolved(
            job=d.job.job, check=c.check, frame=c.frame, subject=c.subject, verifier=c.verifier, outcome=outcome,
            subject_verdict=subject, verifier_verdict=verifier, now=d.now,
        )
    )


def _classify(j: Job, f: Figures) -> Judgement:
    """Right: agrees with the arbitration; close: within the calibration tier; wrong: a cheat."""
    if f.verdict != Verdict.DISAGREE:
        return Judgement.RIGHT
    s = j.settings
    if f.fraction_off <= s.calibration_fraction and f.psnr >= s.calibration_psnr:
        return Judgement.CLOSE
    return Judgement.WRONG


def _judge(d: Draft, cid: int, subject: Judgement, verifier: Judgement) -> None:
    """Rule 6: whoever is far from the arbitration is evicted; close is calibration, not a cheat.

    Rule 19: a window alone never evicts its subject: the requester renders the whole frame first."""
    j = d.job
    c = j.checks.by_number[cid]
    if subject == Judgement.WRONG and c.window is not None and c.vs_frame is None and FRIEND.allows(j.friends[c.subject].status, "evict"):
        _frame(d, c)
        return
    wrong = [p for p, v in ((c.subject, subject), (c.verifier, verifier)) if v == Judgement.WRONG and p is not None]
    if subject == Judgement.WRONG and verifier == Judgement.WRONG:
        outcome = Outcome.BOTH_WRONG
    elif subject == Judgement.WRONG:
        outcome = Outcome.SUBJECT_WRONG
    elif verifier == Judgement.WRONG:
        outcome = Outcome.VERIFIER_WRONG
    elif Judgement.CLOSE in (subject, verifier):
        outcome = Outcome.CALIBRATION
    else:
        outcome = Outcome.AGREED
    _resolve(d, c, outcome, subject, verifier)
    evidence = Evidence(
        check=cid, frame=c.frame, subject=c.subject, subject_sha256=c.subject_sha256, verifier=c.verifier, verifier_sha256=c.verifier_sha256,
        arbitration_sha256=c.arbitration_sha256 or c.verifier_sha256, pair=c.pair, vs_subject=c.vs_subject, vs_verifier=c.vs_verifier,
        vs_frame=c.vs_frame,
    )
    for friend in wrong:
        _evict(d, friend, evidence)


def _frame(d: Draft, c: Check) -> None:
    """Rule 19: ask for the requester's own whole frame of a crop check whose window disagreed with its subject."""
    d.emit(OwnRenderRequested(job=d.job.job, check=c.check, frame=c.frame, purpose=Purpose.FRAME, now=d.now))


def _judge_frame(d: Draft, c: Check) -> None:
    """Rule 19: the requester's whole frame judges the subject. Agreeing with it, the subject rendered its frame
    right and the window's difference is the engine's: nobody is evicted for it, the job checks whole frames from
    now on (``CropsUnequal``), and the verifier keeps the judgement its window earned against the requester's."""
    j = d.job
    assert c.vs_frame is not None
    subject = _classify(j, c.vs_frame)
    verifier = _classify(j, c.vs_verifier) if c.vs_verifier is not None else Judgement.NONE
    if subject != Judgement.WRONG:
        window = c.vs_subject or c.pair
        assert window is not None
        d.emit(CropsUnequal(job=j.job, check=c.check, frame=c.frame, subject=c.subject, window=window, whole=c.vs_frame, now=d.now))
    _judge(d, c.check, subject, verifier)


def _evict(d: Draft, friend: str, evidence: Evidence) -> None:
    j = d.job
    if not FRIEND.allows(j.friends[friend].status, "evict"):
        return  # evicted already (both parties of one check, or twice over)
    for number in sorted(j.tasks.live_of.get(friend, ())):
        d.drop(number, DropReason.EVICTED)
    for c in list(j.checks.by_number.values()):
        if c.subject == friend and CHECK.allows(c.state, Step.VOID):
            _resolve(d, c, Outcome.VOID)
    discarded = tuple(sorted(f for f, copy in j.frames.copy.items() if copy.friend == friend))
    d.emit(CheaterEvicted(job=j.job, friend=friend, evidence=evidence, discarded=discarded, now=d.now))
    _unravel.unravel(d, friend)


def record_own_render(d: Draft, c: RecordOwnRender) -> None:
    j = d.job
    check = _known_check(j, c.check)
    if not (isinstance(c.sha256, str) and 0 < len(c.sha256) <= 128):
        raise Rejected("bad-sha", "an own render names its sha256")
    CHECK.next(check.state, Step.RENDERED, j.job, "check", c.check)
    whole = check.state == CheckState.FRAMING
    d.emit(OwnRenderReceived(job=j.job, check=c.check, sha256=c.sha256, now=c.now, whole=whole))
    if check.state == CheckState.OWN:  # the requester was the verifier
        compare_pair(d, c.check)
        return
    if whole:  # Rule 19: the requester's whole frame against the subject's
        if c.sha256 == check.subject_sha256:
            d.emit(ComparisonMade(job=j.job, check=c.check, against=Against.FRAME, figures=Figures(verdict=Verdict.IDENTICAL), now=c.now))
        else:
            d.emit(
                ComparisonRequested(
                    job=j.job, check=c.check, frame=check.frame, against=Against.FRAME,
                    a_friend=None, a_sha256=c.sha256, b_friend=check.subject, b_sha256=check.subject_sha256,
                )
            )
        _after_comparison(d, c.check)
        return
    for against, friend, sha in ((Against.SUBJECT, check.subject, check.subject_sha256), (Against.VERIFIER, check.verifier, check.verifier_sha256)):
        if sha == c.sha256:
            d.emit(ComparisonMade(job=j.job, check=c.check, against=against, figures=Figures(verdict=Verdict.IDENTICAL), now=c.now))
        else:
            d.emit(
                ComparisonRequested(
                    job=j.job, check=c.check, frame=check.frame, against=against,
                    a_friend=None, a_sha256=c.sha256, b_friend=friend, b_sha256=sha,
                )
            )
    _after_comparison(d, c.check)


# ---------------------------------------------------------------- evolving


def _set(j: Job, c: Check, step: Step, **changes: Any) -> None:
    j.checks.by_number[c.check] = _replace(c, state=CHECK.next(c.state, step, j.job, "check", c.check), **changes)


def _unassign(j: Job, c: Check) -> None:
    _set(j, c, Step.UNASSIGN, verifier=None, verifier_sha256="", task=None)
    j.checks.pending[c.check] = None


def _friends_joined(j: Job, e: FriendsJoined) -> None:
    j.checks.ring = e.ring
    j.checks.position = {f: i for i, f in enumerate(e.ring)}


def _task_assigned(j: Job, e: TaskAssigned) -> None:
    if e.kind == TaskKind.CHECK:
        for cid in e.checks:
            _set(j, j.checks.by_number[cid], Step.ASSIGN, verifier=e.friend, task=e.task)
            j.checks.pending.pop(cid, None)


def _task_dropped(j: Job, e: TaskDropped) -> None:
    """The undelivered checks of a dropped check task wait for a verifier again."""
    task = j.tasks.by_number[e.task]
    if task.kind != TaskKind.CHECK:
        return
    undelivered = set(e.frames)
    for frame, cid in zip(task.frames, task.checks):
        c = j.checks.by_number[cid]
        if frame in undelivered and c.task == task.task and CHECK.allows(c.state, Step.UNASSIGN):
            _unassign(j, c)


def _copy_received(j: Job, e: CopyReceived) -> None:
    if e.role == Role.CANDIDATE:
        j.checks.open_batch[e.friend] = j.checks.open_batch.get(e.friend, ()) + (e.frame,)
    elif e.role == Role.PAIR and e.check is not None:
        first = j.frames.copy[e.frame]
        j.checks.by_number[e.check] = Check(
            check=e.check,
            kind=CheckKind.PAIR,
            frame=e.frame,
            subject=first.friend,
            subject_sha256=first.sha256,
            covers=(e.frame,),
            state=CheckState.COMPARING,
            verifier=e.friend,
            verifier_sha256=e.sha256,
            task=e.task,
        )
        j.checks.next_check = e.check + 1
    elif e.role == Role.CHECK and e.check is not None:
        _set(j, j.checks.by_number[e.check], Step.COPY, verifier_sha256=e.sha256)


def _copy_faulted(j: Job, e: CopyFaulted) -> None:
    task = j.tasks.by_number[e.task]
    if task.kind == TaskKind.CHECK:
        c = j.checks.by_number[task.checks[task.frames.index(e.frame)]]
        if c.task == task.task and CHECK.allows(c.state, Step.UNASSIGN):
            _unassign(j, c)


def _checks_drawn(j: Job, e: ChecksDrawn) -> None:
    ch = j.checks
    drawn = set(e.frames)
    left = tuple(f for f in ch.open_batch.get(e.subject, ()) if f not in drawn)
    if left:
        ch.open_batch[e.subject] = left
    else:
        ch.open_batch.pop(e.subject, None)
    for offset, (frame, sha) in enumerate(zip(e.tests, e.shas)):
        cid = e.first_check + offset
        window, draw = (e.windows[offset], e.draws[offset]) if e.windows else (None, 0)
        spot = frame in e.spots
        covers = (frame,) if window is not None and not spot else e.frames  # a crop check its frame; a spot check its batch
        ch.by_number[cid] = Check(
            check=cid, kind=CheckKind.TEST, frame=frame, subject=e.subject, subject_sha256=sha, covers=covers, window=window, draw=draw, spot=spot,
            by_requester=frame in e.own,
        )
        ch.pending[cid] = None
    ch.next_check = e.first_check + len(e.tests)
    ch.next_batch = e.batch + 1
    if e.spots:
        ch.spotted.add(e.subject)


def _checks_reopened(j: Job, e: ChecksReopened) -> None:
    ch = j.checks
    holds = set(e.holds)
    for offset, old in enumerate(e.of):
        c = ch.by_number[old]
        cid = e.first_check + offset
        ch.by_number[cid] = Check(
            check=cid, kind=c.kind, frame=c.frame, subject=c.subject, subject_sha256=c.subject_sha256,
            covers=(c.frame,) if c.frame in holds else (), state=CheckState.COMPARED, verifier=c.verifier,
            verifier_sha256=c.verifier_sha256, window=c.window, draw=c.draw, spot=True, by_requester=True, reopened=True, pair=c.pair,
        )
    ch.next_check = e.first_check + len(e.of)


_FIGURES = {Against.PAIR: "pair", Against.SUBJECT: "vs_subject", Against.VERIFIER: "vs_verifier", Against.FRAME: "vs_frame"}


def _comparison_made(j: Job, e: ComparisonMade) -> None:
    _set(j, j.checks.by_number[e.check], _COMPARE[e.against], **{_FIGURES[e.against]: e.figures})


def _own_render_requested(j: Job, e: OwnRenderRequested) -> None:
    c = j.checks.by_number[e.check]
    ch = j.checks
    if e.purpose == Purpose.FRAME:  # Rule 19: the engine's doing until the frame says otherwise, so not counted
        _set(j, c, Step.FRAME)      # against the friend's owner (Rule 16)
        return
    if e.purpose == Purpose.CHECK:
        _set(j, c, Step.OWN, own=True, verifier=None)
        ch.pending.pop(e.check, None)
        ch.own_checks += 1
        ch.spot_checks += c.spot  # a spot the requester renders alone (spot_alone)
    else:
        _set(j, c, Step.ARBITRATE)
        ch.arbitrations += 1
        ch.spot_checks += c.pair is not None and c.pair.verdict != Verdict.DISAGREE  # a spot check, or an anchoring one
        ch.anchoring.add(c.subject)
        if c.verifier is not None:
            ch.anchoring.add(c.verifier)
    rec = j.friends.get(c.subject)
    if rec is not None and rec.reputation < j.settings.trusted_from:  # Rule 16: the requester's work for untrusted friends
        ch.own_untrusted_of[rec.owner] = ch.own_untrusted_of.get(rec.owner, 0) + 1
        ch.own_untrusted += 1


def _own_render_received(j: Job, e: OwnRenderReceived) -> None:
    c = j.checks.by_number[e.check]
    if c.state == CheckState.OWN:
        _set(j, c, Step.RENDERED, verifier_sha256=e.sha256)
    elif c.state == CheckState.FRAMING:
        _set(j, c, Step.RENDERED, frame_sha256=e.sha256)
    else:
        _set(j, c, Step.RENDERED, arbitration_sha256=e.sha256)


def _check_resolved(j: Job, e: CheckResolved) -> None:
    c = j.checks.by_number[e.check]
    _set(j, c, Step.VOID if e.outcome == Outcome.VOID else Step.RESOLVE, outcome=e.outcome)
    ch = j.checks
    ch.pending.pop(e.check, None)
    if c.verifier is not None and (Judgement.CLOSE in (e.subject_verdict, e.verifier_verdict) or e.outcome == Outcome.CALIBRATION):
        ch.calibrated.add(pair(c.subject, c.verifier))
    # Rule 14: who the requester's own render found right (or wrong) in this job.
    if c.own and e.outcome == Outcome.AGREED:
        ch.anchored.add(c.subject)
    for party, verdict in ((c.subject, e.subject_verdict), (c.verifier, e.verifier_verdict)):
        if party is None:
            continue
        if verdict == Judgement.RIGHT:
            ch.anchored.add(party)
        elif verdict == Judgement.WRONG:
            ch.forged[party] = ch.forged.get(party, ()) + (c.frame,)
    if c.arbitration_sha256 or e.outcome == Outcome.VOID:
        ch.anchoring.discard(c.subject)
        if c.verifier is not None:
            ch.anchoring.discard(c.verifier)


def _crops_unequal(j: Job, e: CropsUnequal) -> None:
    """Rule 19: the job checks whole frames from now on. Checks no one renders yet lose their window (a friend
    given one renders the whole frame); those already rendering a window keep it, and a disagreement of theirs
    goes straight to the requester's whole frame."""
    j.settings = _replace(j.settings, crop_checks=False)
    ch = j.checks
    for cid in ch.pending:
        c = ch.by_number[cid]
        if c.window is not None and c.state == CheckState.PENDING:
            ch.by_number[cid] = _replace(c, window=None)


def _cheater_evicted(j: Job, e: CheaterEvicted) -> None:
    ch = j.checks
    ch.evictions[e.friend] = e.evidence
    ch.ring = tuple(f for f in ch.ring if f != e.friend)
    ch.position = {f: i for i, f in enumerate(ch.ring)}
    ch.open_batch.pop(e.friend, None)
    # Its delivered test renders are void: someone else renders them again.
    for c in list(ch.by_number.values()):
        if c.verifier == e.friend and CHECK.allows(c.state, Step.UNASSIGN):
            _unassign(j, c)


EVOLVERS: dict[type, Callable[[Job, Any], None]] = {
    FriendsJoined: _friends_joined,
    TaskAssigned: _task_assigned,
    TaskDropped: _task_dropped,
    CopyReceived: _copy_received,
    CopyFaulted: _copy_faulted,
    ChecksDrawn: _checks_drawn,
    ChecksReopened: _checks_reopened,
    ComparisonMade: _comparison_made,
    OwnRenderRequested: _own_render_requested,
    OwnRenderReceived: _own_render_received,
    CheckResolved: _check_resolved,
    CheaterEvicted: _cheater_evicted,
    CropsUnequal: _crops_unequal,
}
