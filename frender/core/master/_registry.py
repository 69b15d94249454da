"""The registry: friends and their records, liveness, the assignment queues, friend names, trusted requesters.

Invariants: a friend registers only under its user's bound name and key, with
a name unique once normalised (Rule 1); liveness is soft, from heartbeats only
(Rule 6); each friend sits in exactly one queue, its profile's machine and its
trust (Rule 7), and keeps its place in the order when it changes queues;
reputation rises only from the requester's own renders and drops to 0 when the
friend is found wrong (Rule 7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from frender.core._decider import Rejected
from frender.core.master._master import Draft, FriendRecord, Master
from frender.core.master._states import FRIEND, FriendState
from frender.core.master.commands import Heartbeat, RegisterFriend, ReportJob, TrustRequester
from frender.core.master.events import (
    CheckRunUpdated,
    FriendRegistered,
    FriendReleased,
    FriendSeen,
    ReputationChanged,
    RequesterTrusted,
)
from frender.core.names import NAME_RULE, is_valid_name, normalised

__all__ = ["is_live", "available", "is_trusted", "standing", "lapsed", "friend_state", "EVOLVERS", "MAX_AWAY", "MAX_REFUSED"]

MAX_AWAY = 64  # characters of a friend's reason for being away
MAX_REFUSED = 64  # users one friend may refuse
_REQUESTERS_KEPT = 8  # Rule 7 counts distinct requesters up to this many


# ---------------------------------------------------------------- queries


def is_live(state: Master, friend: str, now: float) -> bool:
    seen = state.seen.get(friend)
    return seen is not None and 0 <= now - seen[0] <= state.settings.friend_timeout


_FREE, _HELD, _AWAY = FriendState.FREE, FriendState.HELD, FriendState.AWAY  # an enum member costs a lookup on its class


def friend_state(state: Master, rec: FriendRecord, now: float) -> FriendState:
    """The friend at ``now``: AWAY when not live, busy or away (paused, outside its schedule); HELD while its hold
    lasts; else FREE (an expired hold counts as none: it is released when the friend is next assigned)."""
    seen = state.seen.get(rec.friend)
    if seen is None or not (0 <= now - seen[0] <= state.settings.friend_timeout) or seen[1] or rec.away:
        return _AWAY
    return _HELD if rec.state is _HELD and now < rec.held_until else _FREE


def available(state: Master, rec: FriendRecord, now: float) -> bool:
    """Live, not busy nor away (paused, outside its schedule), and holding no job (an expired hold counts as none):
    ``friend_state`` is FREE, inlined for the walk along the queues."""
    seen = state.seen.get(rec.friend)
    if seen is None or not (0 <= now - seen[0] <= state.settings.friend_timeout) or seen[1] or rec.away:
        return False
    return rec.state is not _HELD or now >= rec.held_until


def is_trusted(state: Master, rec: FriendRecord) -> bool:
    """Rule 7: enough of the requester's own checks passed in a row, in enough jobs of enough requesters."""
    s = state.settings
    return rec.reputation >= s.trust_threshold and rec.trust_jobs >= s.trust_jobs and len(rec.requesters) >= s.trust_requesters


def standing(state: Master, rec: FriendRecord) -> int:
    """The reputation a requester is told (``GrantedFriend.reputation``): below the threshold unless trusted, so a
    friend with many checks from one job or one requester is spotted and bounded as a probationary one."""
    return rec.reputation if is_trusted(state, rec) else min(rec.reputation, max(0, state.settings.trust_threshold - 1))


def lapsed(state: Master, rec: FriendRecord, now: float) -> bool:
    """Rule 7: trusted, but its last passed own check is older than ``trust_ttl`` (logs from before it: never)."""
    ttl = state.settings.trust_ttl
    return ttl > 0 and rec.checked_at > 0 and now - rec.checked_at > ttl


# ---------------------------------------------------------------- deciding


def register_friend(d: Draft, c: RegisterFriend) -> None:
    """Rule 1: a friend speaks with its user's key, under a name of its own; a change of profile or capacity is logged."""
    account = d.state.accounts.get(c.user)
    if account is None or account.key is None:
        raise Rejected("unknown-user", f"no account {c.user!r}: its owner creates it first (frender account create {c.user} --master ...)")
    if account.key != c.key:
        raise Rejected("name-taken", f"username {c.user!r} belongs to another key: a friend registers with its user's key")
    if not c.friend.startswith(c.user + "/") or len(c.friend) > 64 + 1 + 256:
        raise Rejected("bad-friend", f"friend name {c.friend[:64]!r} must be '{c.user}/<name>'")
    known = d.friend(c.friend)
    if known is None:
        _check_new_friend_name(d.state, c)
    else:
        FRIEND.next(known.state, "RegisterFriend", "friend", c.friend)
    if not 1 <= c.capacity <= 1024:
        raise Rejected("bad-friend", "capacity is 1 to 1024 threads")
    check_availability(c.away, c.refuse)
    if known is None or known.profile != c.profile or known.capacity != c.capacity:
        d.emit(FriendRegistered(friend=c.friend, user=c.user, profile=c.profile, capacity=c.capacity, now=c.now))
    d.emit(FriendSeen(friend=c.friend, busy=False, now=c.now, away=c.away, refuse=c.refuse))


def _check_new_friend_name(state: Master, c: RegisterFriend) -> None:
    """A new friend's name is checked as a username is (one logged before keeps its name)."""
    name = c.friend.removeprefix(c.user + "/")
    if not is_valid_name(name):
        raise Rejected("bad-friend", f"friend name {name[:64]!r} must be {NAME_RULE}")
    holder = state.friend_names.get(normalised(c.friend))
    if holder is not None:
        raise Rejected("name-taken", f"friend {c.friend!r} is the friend {holder!r} (names are compared without case): choose another")


def check_availability(away: str, refuse: tuple[str, ...]) -> None:
    if len(away) > MAX_AWAY or not away.isprintable():
        raise Rejected("bad-heartbeat", f"'away' is at most {MAX_AWAY} printable characters")
    if len(refuse) > MAX_REFUSED or any(not user or len(user) > 64 for user in refuse):
        raise Rejected("bad-heartbeat", f"'refuse' names at most {MAX_REFUSED} users of 1-64 characters")


def heartbeat(d: Draft, c: Heartbeat) -> None:
    """Liveness (Rule 6), Rule 3: a heartbeat that names the held job as done releases the friend, and Rule 7: a
    trusted friend's first heartbeat after its trust lapsed drops it below the threshold."""
    rec = d.state.friends.get(c.friend)
    if rec is None:
        raise Rejected("unknown-friend", f"friend {c.friend!r} is not registered")
    if d.state.accounts[rec.user].key != c.key:
        raise Rejected("wrong-key", f"friend {c.friend!r} belongs to another key")
    FRIEND.next(rec.state, "Heartbeat", "friend", c.friend)
    check_availability(c.away, c.refuse)
    d.emit(FriendSeen(friend=c.friend, busy=c.busy, now=c.now, away=c.away, refuse=c.refuse))
    if rec.job is not None and c.last_done == rec.job and FRIEND.allows(rec.state, "release"):
        d.emit(FriendReleased(friend=c.friend, job=rec.job, why="done"))
    if is_trusted(d.state, rec) and lapsed(d.state, rec, c.now):  # Rule 7: its trust lapsed (once: then it is not trusted)
        lapse(d, rec.job or 0, [rec], c.now)


def trust(d: Draft, c: TrustRequester) -> None:
    """Rule 2: the operator names the requesters it trusts; trusting one again under its name is nothing new."""
    if d.state.requesters.get(c.key) == c.name:
        return
    if not is_valid_name(c.name):
        raise Rejected("bad-name", f"a requester's name {c.name[:64]!r} must be {NAME_RULE}")
    d.emit(RequesterTrusted(key=c.key, name=c.name))


def record_outcomes(d: Draft, c: ReportJob, evicted: set[str], newly_evicted: list[str]) -> None:
    """A report's check runs, and Rule 7: reputation from the requester's own renders, at most ``trust_per_job`` more
    a report, 0 for a friend found wrong (``evicted``: in this job, before or by this report) and, farm-wide, for
    every other friend of a newly evicted friend's owner (an owner is one party: its machines share its key)."""
    for friend, outcomes in sorted(c.check_outcomes.items()):
        run = d.state.friends[friend].clean_run
        for clean in outcomes:
            run = run + 1 if clean else 0
        if outcomes:
            d.emit(CheckRunUpdated(friend=friend, run=run))
    cap = d.state.settings.trust_per_job
    owners = {d.state.friends[f].user for f in newly_evicted}
    for friend in sorted(set(c.own_outcomes) | set(newly_evicted)):
        outcomes = c.own_outcomes.get(friend, ())
        was = d.state.friends[friend].reputation
        reputation = base = was
        for passed in outcomes:
            reputation, base = (reputation + 1, base) if passed else (0, 0)
        if cap > 0:
            reputation = min(reputation, base + cap)
        if friend in evicted or d.state.friends[friend].user in owners:
            reputation = 0
        if reputation != was or outcomes:
            passes = sum(outcomes)
            d.emit(ReputationChanged(friend=friend, job=c.job, reputation=reputation, passed=passes, failed=len(outcomes) - passes, now=c.now))
    for rec in sorted(d.state.friends.values(), key=lambda r: r.friend) if owners else ():
        if rec.user in owners and rec.friend not in c.own_outcomes and rec.friend not in newly_evicted and (rec.reputation or rec.trust_jobs):
            d.emit(ReputationChanged(friend=rec.friend, job=c.job, reputation=0, passed=0, failed=0, now=c.now))


def lapse(d: Draft, job: int, friends: list[FriendRecord], now: float) -> None:
    """Rule 7's decay: a trusted friend whose last pass is older than ``trust_ttl`` drops below the threshold
    (probationary until its next job's own checks pass; its jobs and requesters are kept)."""
    below = max(0, d.state.settings.trust_threshold - 1)
    for rec in friends:
        d.emit(ReputationChanged(friend=rec.friend, job=job, reputation=min(rec.reputation, below), passed=0, failed=0))


# ---------------------------------------------------------------- evolving


def _friend_registered(state: Master, e: FriendRegistered) -> None:
    rec = state.friends.get(e.friend)
    if rec is None:
        rec = state.friends[e.friend] = FriendRecord(
            friend=e.friend, user=e.user, profile=e.profile, capacity=e.capacity, registered=len(state.friends)
        )
        state.friend_names.setdefault(normalised(e.friend), e.friend)
        # The newest registration, never assigned: the end of the never-assigned part.
        state.queue(e.profile, is_trusted(state, rec)).fresh[e.friend] = rec
    else:
        if rec.profile != e.profile:
            state.queue(rec.profile, is_trusted(state, rec)).remove(e.friend)
            state.queue(e.profile, is_trusted(state, rec)).place(rec)
        rec.profile, rec.capacity = e.profile, e.capacity


def _friend_seen(state: Master, e: FriendSeen) -> None:
    state.seen[e.friend] = (e.now, e.busy)
    rec = state.friends.get(e.friend)
    if rec is not None:
        rec.away, rec.refuses = e.away, frozenset(normalised(user) for user in e.refuse)


def _requester_trusted(state: Master, e: RequesterTrusted) -> None:
    state.requesters[e.key] = e.name


def _check_run_updated(state: Master, e: CheckRunUpdated) -> None:
    state.friends[e.friend].clean_run = e.run


def _reputation_changed(state: Master, e: ReputationChanged) -> None:
    rec = state.friends[e.friend]
    was = is_trusted(state, rec)
    rec.reputation = e.reputation
    if e.reputation == 0 or e.failed:  # found wrong (or its owner was): trust and stake start again
        rec.trust_jobs, rec.last_trust_job, rec.requesters, rec.earned = 0, 0, frozenset(), 0
    elif e.passed and not e.failed:
        if e.job != rec.last_trust_job:
            rec.trust_jobs, rec.last_trust_job = rec.trust_jobs + 1, e.job
        job = state.jobs.get(e.job)
        if job is not None and job.requester not in rec.requesters and len(rec.requesters) < _REQUESTERS_KEPT:
            rec.requesters = rec.requesters | {job.requester}
        rec.checked_at = max(rec.checked_at, e.now)
    if is_trusted(state, rec) != was:  # it changes queues, keeping its place in the order
        state.queue(rec.profile, was).remove(rec.friend)
        state.queue(rec.profile, not was).place(rec)


EVOLVERS: dict[type, Callable[[Master, Any], None]] = {
    FriendRegistered: _friend_registered,
    FriendSeen: _friend_seen,
    RequesterTrusted: _requester_trusted,
    CheckRunUpdated: _check_run_updated,
    ReputationChanged: _reputation_changed,
}
