"""Unravelling: what a caught friend's word was worth in its job, undone (Rules 14 and 15).

Invariants: once a friend is caught, no frame stays final on its word: its own
final copies go back to the queue, others' copies it vouched for wait for the
requester's own render of the same window, and every agreed peer check over
its copies is judged again by the requester, so a peer that vouched for one of
its forgeries is caught in turn. Judging again is an arbitration like any
other (Rule 6): unpaid, never drawn on the escrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from frender.core.job._states import CHECK, Step
from frender.core.job.events import CheckKind, CheckResolved, ChecksReopened, FramesRecalled, Outcome, OwnRenderRequested, Purpose

if TYPE_CHECKING:
    from frender.core.job._job import Draft

__all__ = ["unravel", "reopen"]


def unravel(d: Draft, friend: str) -> None:
    """Rule 15: a caught friend's word counts for nothing in this job. Its final frames are recalled and
    rendered again; others' frames it vouched for (final or not) are held until the requester's own render of
    the same window judges them; every agreed peer check over its copies is judged again by the requester, so a
    peer that vouched for one of its forgeries is caught too (and unravelled in turn)."""
    j = d.job
    f = j.frames
    evicted = j.checks.evictions
    for c in list(j.checks.by_number.values()):  # a judgement of a caught pair's checks judges nobody new
        if c.reopened and c.verifier == friend and c.subject in evicted and CHECK.allows(c.state, Step.VOID):
            d.emit(CheckResolved(job=j.job, check=c.check, frame=c.frame, subject=c.subject, verifier=c.verifier, outcome=Outcome.VOID, now=d.now))
    requeued = tuple(sorted(n for n, ff in f.final.items() if ff.friend == friend))
    held: list[int] = []
    again: list[int] = []
    for c in j.checks.by_number.values():
        if c.kind != CheckKind.TEST or c.outcome != Outcome.AGREED or c.verifier is None or c.arbitration_sha256:
            continue  # only peer agreement the requester never judged
        if c.subject == friend and c.verifier not in evicted:
            again.append(c.check)  # judges the peer that vouched for the caught friend's copy
        elif c.verifier == friend and c.subject not in evicted and c.frame not in f.confirmed:
            copy = f.final.get(c.frame) or f.copy.get(c.frame)
            if copy is not None and copy.sha256 == c.subject_sha256 and c.check in f.vouched.get(c.frame, {}).values():
                again.append(c.check)
                held.append(c.frame)
    recalled = tuple(sorted(n for n in held if n in f.final))
    if requeued or recalled:
        d.emit(FramesRecalled(job=j.job, friend=friend, requeued=requeued, held=recalled, now=d.now))
    # Its latest copies first: it was caught forging now, so a peer that vouched for a forgery is likeliest found
    # early, and the rest of that peer's judgements are void once it is caught (above).
    reopen(d, friend, tuple(sorted(again, reverse=True)), tuple(sorted(held)))


def reopen(d: Draft, friend: str, checks: tuple[int, ...], holds: tuple[int, ...]) -> None:
    """Agreed checks judged again by the requester's render of the same window (Rules 14 and 15)."""
    if not checks:
        return
    j = d.job
    first = j.checks.next_check
    d.emit(ChecksReopened(job=j.job, friend=friend, of=checks, first_check=first, holds=holds, now=d.now))
    for offset in range(len(checks)):
        c = j.checks.by_number[first + offset]
        d.emit(OwnRenderRequested(job=j.job, check=c.check, frame=c.frame, purpose=Purpose.ARBITRATION, now=d.now))
