"""Assignment: requesting friends for a job, the grants, the jobs that wait, and the releases of held friends.

Invariants: only a trusted requester's own open jobs get friends (Rules 2,
``_states.JOB``); a friend is granted only while FREE at the request's time
and holds one job until it is released (Rule 3, ``_states.FRIEND``); a
submitter's own friends, friends refusing it and friends away are never
granted (Rule 4); probationary friends stay a minority while a trusted one is
live (Rule 8); a grant never takes a friend that an open job of a higher
priority waits for (Rule 10); a job that no friend could ever serve is refused
(Rule 11). Every grant escrows its points in the same decision (Rule 5).

The assignment rule is the paper's (the first N live, available friends with
the job's profile) in a fair order: trusted friends first, then probationary
ones up to a minority; within each, least recently assigned first with
never-assigned friends last, owners mixed so one user's friends do not fill a
job. The order is kept, not recomputed: ``Master.queues`` holds, per profile
and trust, the friends in assignment order, so a request walks that order and
usually stops after a few friends instead of sorting them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import heapq

from attrs import frozen

from frender.core._decider import Rejected
from frender.core.master import _ledger, _registry
from frender.core.master._master import Draft, FriendRecord, JobRecord, Master
from frender.core.master._registry import available, friend_state, is_live, is_trusted, lapsed
from frender.core.master._states import FRIEND, JOB, JobState
from frender.core.master.commands import RequestFriends
from frender.core.master.events import FriendReleased, FriendsAssigned, JobClosed, JobOpened, JobPrioritised, EscrowFunded
from frender.core.names import normalised

__all__ = ["request_friends", "own_job", "no_friends_cause", "EVOLVERS"]


@frozen(kw_only=True)
class _Ask:
    """What a request asks for, settled against its job: the job's number, the points due, its priority."""

    job: JobRecord | None  # None: a new job
    number: int
    base: int  # M, at the first grant only
    s: int  # check points per friend granted
    priority: int


# ---------------------------------------------------------------- deciding


def own_job(d: Draft, requester: str, number: int, command: str) -> JobRecord:
    """The requester's own job ``number``, if its state takes ``command`` (Rule 2; a closed job takes none)."""
    job = d.job(number)
    if job is None or job.requester != requester:
        raise Rejected("unknown-job", f"job {number} is not one of this requester's")
    JOB.next(job.state, command, "job", number)
    return job


def request_friends(d: Draft, c: RequestFriends) -> None:
    """Rules 2-4, 8, 10, 11: grant up to ``want`` friends the submitter can pay for, escrowing their points."""
    if c.requester not in d.state.requesters:
        raise Rejected("untrusted", "this requester's key is not trusted by the master's operator")
    if c.want < 1 or c.frames < 1 or c.checks_per_friend < 0:
        raise Rejected("bad-request", "a job needs at least one frame and asks for at least one friend")
    _ledger.bind(d, c.submitter, c.submitter_key)
    _ledger.release(d, c.submitter, c.now)  # Rule 12: holds that ran out are spendable
    ask = _ask(d, c)
    affordable = _affordable(d, c, ask)
    ahead = sum(o.waiting for o in d.state.waiting.values() if o.priority > ask.priority and o.job != ask.number)  # Rule 10
    chosen, lapsed_ = _choose(d.state, c, ask.job, min(c.want, affordable) + ahead)
    _registry.lapse(d, ask.number, lapsed_, c.now)  # Rule 7: stale trust seen on the way is dropped, not granted
    chosen = chosen[: max(0, len(chosen) - ahead)]  # the friends at the end of the order are kept for those waiting
    if not chosen:
        _refuse_none_free(d.state, c, ask, ahead)
    for friend in chosen:
        rec = d.friend(friend)
        assert rec is not None
        FRIEND.next(friend_state(d.state, rec, c.now), "assign", "friend", friend)
        if rec.job is not None:  # HELD, yet FREE at this time: its hold expired
            d.emit(FriendReleased(friend=friend, job=rec.job, why="expired"))
    if ask.job is None:
        _open(d, c, ask)
    d.emit(
        FriendsAssigned(
            job=ask.number, friends=tuple(chosen), shortfall=c.want - len(chosen), expires=c.now + d.state.settings.assignment_ttl, now=c.now
        )
    )
    d.emit(EscrowFunded(job=ask.number, user=c.submitter, amount=ask.base + ask.s * len(chosen)))


def _ask(d: Draft, c: RequestFriends) -> _Ask:
    if c.job is None:
        return _Ask(job=None, number=max(d.state.jobs, default=0) + 1, base=c.frames, s=c.checks_per_friend, priority=c.priority)
    job = own_job(d, c.requester, c.job, "RequestFriends")
    if job.submitter != c.submitter:
        raise Rejected("not-submitter", f"job {c.job} was submitted by another user")
    return _Ask(job=job, number=job.job, base=0, s=job.checks_per_friend, priority=job.priority)


def _affordable(d: Draft, c: RequestFriends, ask: _Ask) -> int:
    """How many friends the submitter's balance pays for, after the job's M frame points at its first grant."""
    balance = _ledger.balance(d, c.submitter)
    affordable = c.want if ask.s == 0 else max(0, (balance - ask.base) // ask.s)
    if balance < ask.base or affordable < 1:
        raise Rejected(
            "short-balance",
            f"{c.submitter} has {balance} points; this grant needs {ask.base + ask.s * min(c.want, max(affordable, 1))}",
        )
    return affordable


def _refuse_none_free(state: Master, c: RequestFriends, ask: _Ask, ahead: int) -> None:
    """Rule 11: a new job with no friend free waits, unless none could ever serve it; a later request is refused."""
    if ask.job is None:
        if not _any_could_serve(state, c):
            raise Rejected(
                "no-friends",
                f"no friend of this farm has the profile {c.profile} (the requester's Blender build and CPU class); the job could never start",
            )
        return
    if ahead:
        raise Rejected("no-friends", f"the free friends are kept for {ahead} waiting friend places of jobs with a higher priority")
    if not _any_could_serve(state, c):  # e.g. the only friends of the profile now refuse the submitter
        raise Rejected("no-friends", f"no friend of this farm with the profile {c.profile} renders for {c.submitter} any more")
    raise Rejected(
        "no-friends",
        f"no live, available friend has the profile {c.profile} (probationary friends alone never fill a job while trusted ones are live)",
    )


def _open(d: Draft, c: RequestFriends, ask: _Ask) -> None:
    d.emit(
        JobOpened(
            job=ask.number,
            requester=c.requester,
            submitter=c.submitter,
            frames=c.frames,
            checks_per_friend=ask.s,
            profile=c.profile,
            blend_sha256=c.blend_sha256,
            address=c.address,
            now=c.now,
            opening=c.opening,
        )
    )
    if c.priority:
        d.emit(JobPrioritised(job=ask.number, priority=c.priority))


def _any_could_serve(state: Master, c: RequestFriends) -> bool:
    """Whether some registered friend of the profile could ever render the submitter's job (Rule 11): not its own, not refusing it."""
    refused = normalised(c.submitter)
    return any(
        rec.user != c.submitter and refused not in rec.refuses and rec.profile.renders(c.profile)
        for trusted in (True, False)
        if (queue := state.queues.get((c.profile.machine(), trusted))) is not None
        for rec in queue.ordered()
    )


def no_friends_cause(state: Master, c: RequestFriends) -> str:
    """Why ``c`` was granted no friend, in one machine-readable word (the shell appends it to "no-friends:").

    Read from the registry as it stands: "blender" (no other user's friend
    holds the job's Blender), "class" (none of its agreement class), "refused"
    (those that could render it decline the submitter), "away" (none of them
    live), "paused" or "schedule" (every live one is), "probation" (only
    probationary ones are free while trusted ones are live), "priority"
    (free ones are kept for higher-priority jobs), else "busy".
    """
    others = [rec for rec in state.friends.values() if rec.user != c.submitter]
    if not any(rec.profile.blender_version == c.profile.blender_version for rec in others):
        return "blender"
    fitting = [rec for rec in others if rec.profile.renders(c.profile)]
    if not fitting:
        return "class"
    serving = [rec for rec in fitting if normalised(c.submitter) not in rec.refuses]
    if not serving:
        return "refused"
    live = [rec for rec in serving if is_live(state, rec.friend, c.now)]
    if not live:
        return "away"
    free = [rec for rec in live if available(state, rec, c.now) and rec.friend not in c.exclude]
    if free:
        return "probation" if not any(is_trusted(state, rec) for rec in free) else "priority"
    if all(rec.away for rec in live):
        return "paused" if any(rec.away.startswith("paused") for rec in live) else "schedule" if any("schedule" in rec.away for rec in live) else "away"
    return "busy"


def _choose(state: Master, c: RequestFriends, job: JobRecord | None, limit: int) -> tuple[list[str], list[FriendRecord]]:
    """The paper's rule in a fair order (see the module docstring), trusted friends first (Rules 7, 8).

    The candidates are walked in (last_assigned, registered) order with the
    never-assigned ones last, and split into trusted and probationary. Each
    part is taken by rounds of owners (``_rounds``). Probationary friends come
    only while they stay a minority of the job's friends, unless no trusted
    friend of the profile is live (a new farm must start somewhere). Once
    ``limit`` trusted owners are seen the rest of the order need not be read.
    Trusted friends whose trust lapsed (Rule 7) are passed over and returned, for the decision to drop.
    """
    skip = set(c.exclude)
    held_trusted = held_probation = 0
    if job is not None:
        skip.update(job.friends)
        held = [state.friends[f] for f in job.friends if f not in job.evicted]
        held_trusted = sum(1 for rec in held if is_trusted(state, rec))
        held_probation = len(held) - held_trusted
    lapsed_: list[FriendRecord] = []
    trusted, trusted_live = _candidates(state, c, skip, True, limit, lapsed_)
    chosen = _rounds(trusted, limit)
    room = limit - len(chosen)
    if trusted_live or held_trusted:
        # Rule 8: probationary < trusted, counting the friends the job already holds.
        room = min(room, held_trusted + len(chosen) - 1 - held_probation)
    if room <= 0:
        return chosen, lapsed_
    probation, _ = _candidates(state, c, skip, False, room)
    return chosen + _rounds(probation, room), lapsed_


def _candidates(
    state: Master, c: RequestFriends, skip: set[str], trusted: bool, wanted: int, lapsed_: list[FriendRecord] | None = None
) -> tuple[dict[str, list[tuple[int, FriendRecord]]], bool]:
    """One part's available candidates by owner, in order, until ``wanted`` owners are seen; and whether one of the part is live.
    A trusted friend whose trust lapsed is not a candidate: it goes to ``lapsed_``."""
    by_owner: dict[str, list[tuple[int, FriendRecord]]] = {}
    live = not trusted  # only the trusted part's liveness matters (Rule 8)
    refused = normalised(c.submitter)  # friends refuse users by their normalised names
    queue = state.queues.get((c.profile.machine(), trusted))  # then each friend's GL renderer, for GPU engines
    if queue is None:
        return by_owner, False
    position = 0
    for rec in queue.ordered():
        if not rec.profile.renders(c.profile):  # for a GPU engine, another GL renderer: not of the job's profile
            continue
        if not live and is_live(state, rec.friend, c.now):
            live = True
        if rec.user == c.submitter or refused in rec.refuses or rec.friend in skip or not available(state, rec, c.now):
            continue
        if lapsed_ is not None and lapsed(state, rec, c.now):
            lapsed_.append(rec)
            continue
        by_owner.setdefault(rec.user, []).append((position, rec))
        position += 1
        if len(by_owner) >= wanted and live:
            break
    return by_owner, live and trusted


def _rounds(by_owner: dict[str, list[tuple[int, FriendRecord]]], limit: int) -> list[str]:
    """Up to ``limit`` friends, round by round: every owner's first candidate in order, then every owner's second..."""
    if limit <= 0:
        return []
    if len(by_owner) >= limit:
        firsts = sorted((candidates[0] for candidates in by_owner.values()), key=lambda item: item[0])
        return [rec.friend for _, rec in firsts[:limit]]
    heap = [(0, candidates[0][0], owner) for owner, candidates in by_owner.items()]
    heapq.heapify(heap)
    chosen: list[str] = []
    while heap and len(chosen) < limit:
        picks, _, owner = heapq.heappop(heap)
        candidates = by_owner[owner]
        chosen.append(candidates[picks][1].friend)
        if picks + 1 < len(candidates):
            heapq.heappush(heap, (picks + 1, candidates[picks + 1][0], owner))
    return chosen


# ---------------------------------------------------------------- evolving


def _job_opened(state: Master, e: JobOpened) -> None:
    state.jobs[e.job] = JobRecord(
        job=e.job,
        requester=e.requester,
        submitter=e.submitter,
        frames=e.frames,
        checks_per_friend=e.checks_per_friend,
        profile=e.profile,
        blend_sha256=e.blend_sha256,
        address=e.address,
        opening=e.opening,
    )


def _job_prioritised(state: Master, e: JobPrioritised) -> None:
    state.jobs[e.job].priority = e.priority


def _friends_assigned(state: Master, e: FriendsAssigned) -> None:
    state.assignments += 1
    job = state.jobs[e.job]
    job.friends.extend(e.friends)
    job.waiting = max(0, e.shortfall)
    job.state = JOB.next(job.state, "grant short" if job.waiting else "grant", "job", e.job)
    if job.state is JobState.WAITING:
        state.waiting[e.job] = job
    else:
        state.waiting.pop(e.job, None)
    for friend in e.friends:
        rec = state.friends[friend]
        rec.state = FRIEND.next(rec.state, "assign", "friend", friend)
        rec.job, rec.held_until, rec.last_assigned = e.job, e.expires, state.assignments
    # The highest counter: these friends move to the end of their profile's order.
    for rec in sorted((state.friends[f] for f in e.friends), key=lambda rec: rec.registered):
        queue = state.queue(rec.profile, is_trusted(state, rec))
        queue.remove(rec.friend)
        queue.used[rec.friend] = rec


def _release(rec: FriendRecord, job: int, step: str) -> None:
    """Free ``rec`` if it still holds ``job`` (a release for a job it no longer holds changes nothing)."""
    if rec.job == job:
        rec.state = FRIEND.next(rec.state, step, "friend", rec.friend)
        rec.job = None


def _friend_released(state: Master, e: FriendReleased) -> None:
    _release(state.friends[e.friend], e.job, "expire" if e.why == "expired" else "release")


def _job_closed(state: Master, e: JobClosed) -> None:
    job = state.jobs[e.job]
    job.state = JOB.next(job.state, "close", "job", e.job)
    job.head_seq, job.head_hash, job.outcome = e.head_seq, e.head_hash, e.outcome
    job.waiting = 0
    state.waiting.pop(e.job, None)
    for friend in job.friends:
        rec = state.friends.get(friend)  # a draft's view holds only the friends still holding the job
        if rec is not None:
            _release(rec, e.job, "release")


EVOLVERS: dict[type, Callable[[Master, Any], None]] = {
    JobOpened: _job_opened,
    JobPrioritised: _job_prioritised,
    FriendsAssigned: _friends_assigned,
    FriendReleased: _friend_released,
    JobClosed: _job_closed,
}
