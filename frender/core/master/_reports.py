"""A requester's report on its job: evictions, payouts, fines, check runs and reputation, and the close.

Invariants: a report names only friends assigned to the job, and only the
requester's own open job (Rule 2, ``_states.JOB``); points are paid only by
the report that closes the job, never beyond its escrow, never to an evicted
friend, and a paid friend is not evicted after (Rule 9, ``_states.MEMBER``);
each newly evicted friend's owner forfeits its holds and is fined its stake
(Rules 9, 12), and its reputation, with every other friend of its owner's,
drops to 0 (Rule 7); own checks passed confirm a friend's earlier held pay
(Rule 12); the close refunds the escrow's rest and releases the job's
friends (Rules 3, 5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from frender.core._decider import Rejected
from frender.core.master import _ledger, _registry
from frender.core.master._assignment import own_job
from frender.core.master._master import Draft, JobRecord, Master
from frender.core.master._states import MEMBER, MemberState
from frender.core.master.commands import ReportJob
from frender.core.master.events import FriendEvicted, FriendPaid, JobClosed

__all__ = ["report", "member_state", "EVOLVERS"]


def member_state(job: JobRecord, friend: str) -> MemberState:
    """``friend``'s standing in ``job``, one of its friends (Rule 9)."""
    if friend in job.evicted:
        return MemberState.EVICTED
    return MemberState.PAID if friend in job.paid_friends else MemberState.ASSIGNED


def report(d: Draft, c: ReportJob) -> None:
    job = own_job(d, c.requester, c.job, "ReportJob")
    evicted = _check(job, c)
    newly_evicted = [f for f in dict.fromkeys(c.evicted) if f not in job.evicted]
    for friend in newly_evicted:
        d.emit(FriendEvicted(job=c.job, friend=friend))
    _ledger.pay(d, job, c.payouts, c.now)
    _ledger.fine(d, job, newly_evicted, c.evidence, c.now)
    _registry.record_outcomes(d, c, evicted, newly_evicted)
    for friend, outcomes in sorted(c.own_outcomes.items()):  # Rule 12: the requester's own checks confirm earlier pay
        if outcomes and all(outcomes) and friend not in evicted:
            _ledger.confirm(d, friend, c.job)
    if c.close:
        closing = d.job(c.job)
        assert closing is not None
        d.emit(
            JobClosed(job=c.job, refund=closing.escrow - closing.paid, head_seq=c.head_seq, head_hash=c.head_hash, now=c.now, outcome=c.outcome)
        )


def _check(job: JobRecord, c: ReportJob) -> set[str]:
    """Refuse a report the job cannot take; the friends evicted from the job once it is taken."""
    strangers = (set(c.payouts) | set(c.check_outcomes) | set(c.own_outcomes) | set(c.evicted) | set(c.evidence)) - set(job.friends)
    if strangers:
        raise Rejected("not-assigned", f"{sorted(strangers)} were never assigned to job {c.job}")
    if not c.close and any(c.payouts.values()):
        raise Rejected("not-closed", "points for a job are paid by the report that closes it (Rule 9)")
    standing = _standing(job, c)
    if any(p < 0 for p in c.payouts.values()):
        raise Rejected("bad-report", "payouts are never negative")
    if c.outcome not in ("", "finished", "cancelled", "failed"):
        raise Rejected("bad-report", f"a job ends finished, cancelled or failed, not {c.outcome[:32]!r}")
    total = sum(c.payouts.values())
    if job.paid + total > job.escrow:
        raise Rejected("over-escrow", f"job {c.job} has {job.escrow - job.paid} points in escrow, the report pays {total}")
    return {f for f, member in standing.items() if member is MemberState.EVICTED} | set(job.evicted)


def _standing(job: JobRecord, c: ReportJob) -> dict[str, MemberState]:
    """The report's friends after its evictions, then its payouts, each a step of ``MEMBER`` (a miss is refused)."""
    standing = {f: member_state(job, f) for f in set(c.evicted) | set(c.payouts)}
    for friend in c.evicted:
        standing[friend] = MEMBER.next(standing[friend], "evict", "friend", friend, c.job)
    for friend, points in c.payouts.items():
        if points:
            standing[friend] = MEMBER.next(standing[friend], "pay", "friend", friend, c.job)
    return standing


# ---------------------------------------------------------------- evolving


def _friend_evicted(state: Master, e: FriendEvicted) -> None:
    # Logs from before Rule 9 may evict a friend paid earlier: replay takes them as they are (decisions ask MEMBER).
    state.jobs[e.job].evicted.append(e.friend)


def _friend_paid(state: Master, e: FriendPaid) -> None:
    state.jobs[e.job].paid_friends.add(e.friend)


EVOLVERS: dict[type, Callable[[Master, Any], None]] = {
    FriendEvicted: _friend_evicted,
    FriendPaid: _friend_paid,
}
