"""Frames: delivered copies, their batches, and finality (Rules 1 and 2).

Invariants: a frame has at most one final copy at a time; it becomes final once
its batch's checks are drawn, no unresolved check covers it, and (Rule 14) the
requester has found its author and every friend that vouched for it right in
this job; a final frame is withdrawn only when unravelling (Rule 15) finds it
rested on a caught friend's word; only final frames are served to the client;
a frame has at most one candidate copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import Factory, define

from frender.core._decider import Rejected
from frender.core.job import _checks, _unravel
from frender.core.job._escrow import Use, room
from frender.core.job._states import CHECK, Step
from frender.core.job.commands import DeliverFrame
from frender.core.job.events import (
    CheaterEvicted,
    CheckKind,
    CheckResolved,
    ChecksDrawn,
    CopyFaulted,
    CopyReceived,
    ChecksReopened,
    FinalFrame,
    FramesFinal,
    FramesRecalled,
    Judgement,
    Outcome,
    Role,
    TaskKind,
)

if TYPE_CHECKING:
    from frender.core.job._job import Draft, Job

__all__ = ["Frames", "deliver", "finalise", "sha_ok", "EVOLVERS"]


@define(kw_only=True)
class Frames:
    numbers: tuple[int, ...]  # the job's frames, as submitted
    copy: dict[int, FinalFrame] = Factory(dict)  # frame -> candidate copy (delivered, not final)
    final: dict[int, FinalFrame] = Factory(dict)  # in the order frames became final
    batch_of: dict[int, int] = Factory(dict)  # candidate frame -> its drawn batch
    holds: dict[int, int] = Factory(dict)  # frame -> unresolved checks covering it
    ready: dict[int, None] = Factory(dict)  # drawn, unheld candidates: final at the next settle
    delivered: dict[str, int] = Factory(dict)  # friend -> copies that became candidates
    vouched: dict[int, dict[str, int]] = Factory(dict)  # frame -> peers that agreed with its copy -> their check
    confirmed: set[int] = Factory(set)  # frames whose copy the requester's own render agreed with
    recalled: dict[int, int] = Factory(dict)  # frame -> times withdrawn after being final (Rule 15)

    def clone(self) -> Frames:
        return Frames(
            numbers=self.numbers,
            copy=self.copy.copy(),
            final=self.final.copy(),
            batch_of=self.batch_of.copy(),
            holds=self.holds.copy(),
            ready=self.ready.copy(),
            delivered=self.delivered.copy(),
            vouched=self.vouched.copy(),
            confirmed=self.confirmed.copy(),
            recalled=self.recalled.copy(),
        )


def sha_ok(sha: object) -> bool:
    return isinstance(sha, str) and 0 < len(sha) <= 128


def deliver(d: Draft, c: DeliverFrame) -> None:
    """A stored, decoded copy: a candidate, the second copy of a pair, a check's copy, or nothing new."""
    j = d.job
    task = j.tasks.by_number.get(c.task)
    if task is None:
        raise Rejected("unknown-task", f"task {c.task} was never assigned in job {j.job}")
    if task.friend != c.friend:
        raise Rejected("not-yours", f"task {c.task} of job {j.job} belongs to another friend")
    if c.frame not in task.frames:
        raise Rejected("not-in-task", f"frame {c.frame} is not part of task {c.task}")
    if c.ok and not sha_ok(c.sha256):
        raise Rejected("bad-sha", "a delivered frame names its sha256")

    def received(role: Role, check: int | None = None) -> None:
        d.emit(CopyReceived(job=j.job, task=c.task, friend=c.friend, frame=c.frame, sha256=c.sha256, role=role, check=check, now=c.now))

    if c.frame not in j.tasks.live.get(c.task, ()):
        received(Role.LATE)  # recorded, ignored
    elif not c.ok:  # Rule 8: a fault is retried, never punished
        d.emit(CopyFaulted(job=j.job, task=c.task, friend=c.friend, frame=c.frame, reason=c.reason or "fault", now=c.now))
    elif task.kind == TaskKind.CHECK:
        cid = task.checks[task.frames.index(c.frame)]
        check = j.checks.by_number[cid]
        if check.task != c.task or not CHECK.allows(check.state, Step.COPY):
            received(Role.UNNEEDED)  # the check was voided meanwhile
        else:
            received(Role.CHECK, cid)
            _checks.compare_pair(d, cid)
    elif c.frame in j.frames.final:
        received(Role.DUPLICATE)
    elif c.frame not in j.frames.copy:
        received(Role.CANDIDATE)
    elif j.frames.copy[c.frame].friend != c.friend and room(j, Use.PAIR) >= 1:
        cid = j.checks.next_check
        received(Role.PAIR, cid)
        _checks.compare_pair(d, cid)
    else:
        received(Role.DUPLICATE)


def finalise(d: Draft) -> None:
    """Rule 2: drawn candidates no check holds become final, in frame order; Rule 14: only once the requester
    found their author and every peer that vouched for them right in this job. A frame waiting on a friend the
    requester is not judging yet gets one of its agreed checks judged again (the friend may check no more)."""
    j = d.job
    f = j.frames
    if not f.ready:
        return
    if not _checks.anchoring_on(j):
        d.emit(FramesFinal(job=j.job, frames=tuple(f.copy[n] for n in sorted(f.ready)), now=d.now))
        return
    ch = j.checks
    final: list[FinalFrame] = []
    wanted: dict[str, tuple[int, int]] = {}  # unanchored friend -> (check to judge again, frame it holds)
    for n in sorted(f.ready):
        copy = f.copy[n]
        vouchers = f.vouched.get(n, {})
        missing = [] if n in f.confirmed else [p for p in (copy.friend, *vouchers) if p not in ch.anchored]
        if not missing:
            final.append(copy)
            continue
        for p in missing:
            if p not in ch.anchoring and p not in wanted and vouchers:
                wanted[p] = (vouchers[p] if p in vouchers else next(iter(vouchers.values())), n)
        if not vouchers and copy.friend not in ch.anchoring:
            final.append(copy)  # no peer's word: its checks were the requester's own (or none was drawn)
    if final:
        d.emit(FramesFinal(job=j.job, frames=tuple(final), now=d.now))
    for p, (check, frame) in wanted.items():
        if p not in ch.anchoring and frame in f.ready:
            _unravel.reopen(d, p, (check,), (frame,))


# ---------------------------------------------------------------- evolving


def _copy_received(j: Job, e: CopyReceived) -> None:
    f = j.frames
    if e.role == Role.CANDIDATE:
        f.copy[e.frame] = FinalFrame(frame=e.frame, friend=e.friend, sha256=e.sha256)
        f.delivered[e.friend] = f.delivered.get(e.friend, 0) + 1
    elif e.role == Role.PAIR:
        f.holds[e.frame] = f.holds.get(e.frame, 0) + 1
        f.ready.pop(e.frame, None)


def _checks_drawn(j: Job, e: ChecksDrawn) -> None:
    f = j.frames
    tests = set(e.tests)
    for frame in e.frames:
        f.batch_of[frame] = e.batch
        # A full-frame test covers its whole batch; a crop check covers its own frame only.
        held = f.holds.get(frame, 0) + ((frame in tests and frame not in e.spots) + len(e.spots) if e.windows else len(e.tests))
        f.holds[frame] = held
        if held == 0:
            f.ready[frame] = None


def _check_resolved(j: Job, e: CheckResolved) -> None:
    if e.outcome == Outcome.VOID:
        return
    f = j.frames
    c = j.checks.by_number[e.check]
    copy = f.copy.get(c.frame) or f.final.get(c.frame)
    if c.kind == _TEST and copy is not None and copy.sha256 == c.subject_sha256:
        if (c.own and e.outcome == Outcome.AGREED) or e.subject_verdict == Judgement.RIGHT:
            f.confirmed.add(c.frame)  # the requester's own render agreed with this copy
        elif e.outcome == Outcome.AGREED and c.verifier is not None:
            f.vouched[c.frame] = {**f.vouched.get(c.frame, {}), c.verifier: c.check}
    for frame in c.covers:
        held = f.holds.get(frame, 0) - 1
        f.holds[frame] = held
        if held == 0 and frame in f.batch_of and frame in f.copy:
            f.ready[frame] = None


def _forget(f: Frames, frame: int) -> None:
    f.ready.pop(frame, None)
    f.batch_of.pop(frame, None)
    f.holds[frame] = 0
    f.vouched.pop(frame, None)
    f.confirmed.discard(frame)


def _cheater_evicted(j: Job, e: CheaterEvicted) -> None:
    f = j.frames
    for frame in e.discarded:
        del f.copy[frame]
        _forget(f, frame)


def _frames_recalled(j: Job, e: FramesRecalled) -> None:
    """Rule 15: the caught friend's own final frames go back to work; those it vouched for wait for a judgement."""
    f = j.frames
    for frame in e.requeued:
        del f.final[frame]
        _forget(f, frame)
        f.recalled[frame] = f.recalled.get(frame, 0) + 1
    for frame in e.held:
        f.copy[frame] = f.final.pop(frame)
        f.recalled[frame] = f.recalled.get(frame, 0) + 1


def _checks_reopened(j: Job, e: ChecksReopened) -> None:
    f = j.frames
    for frame in e.holds:
        f.holds[frame] = f.holds.get(frame, 0) + 1
        f.ready.pop(frame, None)


def _frames_final(j: Job, e: FramesFinal) -> None:
    f = j.frames
    for ff in e.frames:
        f.final[ff.frame] = ff
        del f.copy[ff.frame]
        f.ready.pop(ff.frame, None)


_TEST = CheckKind.TEST


EVOLVERS: dict[type, Callable[[Job, Any], None]] = {
    CopyReceived: _copy_received,
    ChecksDrawn: _checks_drawn,
    CheckResolved: _check_resolved,
    CheaterEvicted: _cheater_evicted,
    FramesFinal: _frames_final,
    FramesRecalled: _frames_recalled,
    ChecksReopened: _checks_reopened,
}
