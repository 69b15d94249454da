"""The master's decider: the registry of friends and requesters, and the points ledger.

Theory of operation. The master is one aggregate, because an assignment moves
points (escrow) and holds friends in the same step. Invariants it keeps:

Rule 1: a username is bound to the first key that used it; nobody else acts
        under that name.
Rule 2: only requesters the operator trusts get friends, and a requester
        reports only on its own jobs.
Rule 3: a friend holds at most one job; it is free again when a heartbeat says
        the job is done, the job closes, or the assignment expires.
Rule 4: a submitter's own friends never render its jobs, nor do friends that
        refuse the submitter or are away (paused, outside their schedule).
Rule 5: sum(balances) + sum(open escrow) == points ever granted, after every event.
Rule 6: liveness (heartbeats) is soft state: never logged, so after a restart
        friends are live again only once they heartbeat.

The assignment rule is the paper's (the first N live, available friends with
the job's profile) in a fair order: least recently assigned first, then
owners mixed so one user's friends do not fill a job.

Assignment order is kept, not recomputed: ``Master.queues`` holds, per
profile, the friends in (last_assigned, registered) order, so a request walks
that order and usually stops after a few friends instead of sorting them all.
"""

from __future__ import annotations

import heapq
from itertools import chain
from typing import Any, Callable, ClassVar, Iterator

from attrs import Factory, define, field, frozen

from frender.core._decider import Rejected
from frender.core.profile import RenderProfile

__all__ = [
    # settings and state
    "MasterSettings",
    "Master",
    "FriendRecord",
    "Account",
    "JobRecord",
    # commands
    "RegisterFriend",
    "Heartbeat",
    "TrustRequester",
    "GrantPoints",
    "RequestFriends",
    "ReportJob",
    # events
    "UserBound",
    "FriendRegistered",
    "FriendSeen",
    "FriendReleased",
    "RequesterTrusted",
    "PointsGranted",
    "JobOpened",
    "FriendsAssigned",
    "EscrowFunded",
    "FriendPaid",
    "FriendEvicted",
    "CheckRunUpdated",
    "JobClosed",
    "EVENTS",
    # the decider
    "decide",
    "evolve",
    "is_live",
    "available",
]


@frozen(kw_only=True)
class MasterSettings:
    friend_timeout: float = 2.0  # seconds; the paper used 0.2 on a LAN
    starting_grant: int = 0  # free points for a new username would mint points
    assignment_ttl: float = 6 * 3600.0  # a held friend is freed after this


# ---------------------------------------------------------------- commands


@frozen(kw_only=True)
class RegisterFriend:
    user: str
    key: str  # the user's key fingerprint, proven by the transport
    friend: str  # "user/name": one user may own several friends
    profile: RenderProfile
    capacity: int = 1  # render threads offered
    away: str = ""  # why the friend takes no job now ("paused", "outside schedule"); "" = it may
    refuse: tuple[str, ...] = ()  # users whose jobs this friend declines
    now: float


@frozen(kw_only=True)
class Heartbeat:
    friend: str
    key: str
    busy: bool = False  # the volunteer's machine is in use: take no job
    last_done: int | None = None  # the last job number this friend finished
    away: str = ""  # as in RegisterFriend
    refuse: tuple[str, ...] = ()
    now: float


@frozen(kw_only=True)
class TrustRequester:
    key: str
    name: str


@frozen(kw_only=True)
class GrantPoints:
    user: str
    amount: int
    reason: str = "operator grant"


@frozen(kw_only=True)
class RequestFriends:
    """A trusted requester asks for friends for a new job (job=None) or more for job J."""

    requester: str  # the requester's key fingerprint
    job: int | None = None
    submitter: str
    submitter_key: str
    frames: int  # M
    want: int  # N
    profile: RenderProfile
    checks_per_friend: int = 1  # s
    exclude: tuple[str, ...] = ()  # e.g. friends already evicted from this job
    blend_sha256: str = ""  # named in each friend's signed assignment
    address: str = ""  # where the job's friends reach the requester
    now: float


@frozen(kw_only=True)
class ReportJob:
    """The requester's account of a job: points per friend, check outcomes, evictions."""

    requester: str
    job: int
    payouts: dict[str, int] = Factory(dict)  # friend -> final frames + agreeing checks
    check_outcomes: dict[str, tuple[bool, ...]] = Factory(dict)  # friend -> clean? in order
    evicted: tuple[str, ...] = ()
    head_seq: int = 0  # the requester's log head, held here against truncation
    head_hash: str = ""
    close: bool = True
    now: float


# ------------------------------------------------------------------ events


@frozen(kw_only=True)
class UserBound:
    tag: ClassVar[str] = "user_bound.v1"
    user: str
    key: str
    grant: int  # the starting grant credited now


@frozen(kw_only=True)
class FriendRegistered:
    tag: ClassVar[str] = "friend_registered.v1"
    friend: str
    user: str
    profile: RenderProfile
    capacity: int
    now: float


@frozen(kw_only=True)
class FriendSeen:
    """Soft: a heartbeat. Evolved, never logged (Rule 6)."""

    tag: ClassVar[str] = "friend_seen.v1"
    durable: ClassVar[bool] = False
    friend: str
    busy: bool
    now: float
    away: str = ""
    refuse: tuple[str, ...] = ()


@frozen(kw_only=True)
class FriendReleased:
    tag: ClassVar[str] = "friend_released.v1"
    friend: str
    job: int
    why: str  # "done", "closed", "expired"


@frozen(kw_only=True)
class RequesterTrusted:
    tag: ClassVar[str] = "requester_trusted.v1"
    key: str
    name: str


@frozen(kw_only=True)
class PointsGranted:
    tag: ClassVar[str] = "points_granted.v1"
    user: str
    amount: int
    reason: str


@frozen(kw_only=True)
class JobOpened:
    tag: ClassVar[str] = "job_opened.v1"
    job: int
    requester: str
    submitter: str
    frames: int
    checks_per_friend: int
    profile: RenderProfile
    blend_sha256: str = ""
    address: str = ""
    now: float


@frozen(kw_only=True)
class FriendsAssigned:
    """The decision with what it saw: the friends chosen and how many were missing."""

    tag: ClassVar[str] = "friends_assigned.v1"
    job: int
    friends: tuple[str, ...]
    shortfall: int
    expires: float
    now: float


@frozen(kw_only=True)
class EscrowFunded:
    tag: ClassVar[str] = "escrow_funded.v1"
    job: int
    user: str
    amount: int


@frozen(kw_only=True)
class FriendPaid:
    tag: ClassVar[str] = "friend_paid.v1"
    job: int
    friend: str
    user: str
    points: int


@frozen(kw_only=True)
class FriendEvicted:
    tag: ClassVar[str] = "friend_evicted.v1"
    job: int
    friend: str


@frozen(kw_only=True)
class CheckRunUpdated:
    tag: ClassVar[str] = "check_run_updated.v1"
    friend: str
    run: int  # consecutive clean checks after this job's outcomes


@frozen(kw_only=True)
class JobClosed:
    tag: ClassVar[str] = "job_closed.v1"
    job: int
    refund: int  # escrow returned to the submitter
    head_seq: int
    head_hash: str
    now: float


EVENTS: tuple[type, ...] = (
    UserBound,
    FriendRegistered,
    FriendSeen,
    FriendReleased,
    RequesterTrusted,
    PointsGranted,
    JobOpened,
    FriendsAssigned,
    EscrowFunded,
    FriendPaid,
    FriendEvicted,
    CheckRunUpdated,
    JobClosed,
)

# ------------------------------------------------------------------- state


@define(kw_only=True)
class Account:
    user: str
    key: str | None = None  # None until the name is first used with a key
    balance: int = 0


@define(kw_only=True)
class FriendRecord:
    friend: str
    user: str
    profile: RenderProfile
    capacity: int
    registered: int  # registration order, the last tie-break
    job: int | None = None
    held_until: float = 0.0
    last_assigned: int = 0  # the assignment counter at its last job (0: never)
    clean_run: int = 0
    # Soft state from the last heartbeat (Rule 6), not compared: why it is away, whose jobs it refuses.
    away: str = field(default="", eq=False)
    refuses: frozenset[str] = field(factory=frozenset, eq=False)


@define(kw_only=True)
class JobRecord:
    job: int
    requester: str
    submitter: str
    frames: int
    checks_per_friend: int
    profile: RenderProfile
    blend_sha256: str = ""
    address: str = ""
    friends: list[str] = Factory(list)
    evicted: list[str] = Factory(list)
    paid_friends: set[str] = Factory(set)  # friends paid by an earlier, non-closing report
    escrow: int = 0
    paid: int = 0
    refunded: int = 0
    closed: bool = False
    head_seq: int = 0
    head_hash: str = ""


class _ProfileQueue:
    """One profile's friends in assignment order: least recently assigned, then registration.

    Never-assigned friends (last_assigned 0) come first in registration order;
    then the assigned ones, each assignment moving its friends to the end (its
    counter is the highest), ordered among themselves by registration.
    Derived from the friend records by the evolvers; never logged or compared.
    """

    __slots__ = ("fresh", "used")

    def __init__(self) -> None:
        self.fresh: dict[str, FriendRecord] = {}
        self.used: dict[str, FriendRecord] = {}

    def ordered(self) -> Iterator[FriendRecord]:
        return chain(self.fresh.values(), self.used.values())

    def place(self, rec: FriendRecord) -> None:
        """Insert a friend whose key may fall anywhere (a rare profile change): re-sort its part."""
        if rec.last_assigned == 0:
            self.fresh[rec.friend] = rec
            self.fresh = dict(sorted(self.fresh.items(), key=lambda item: item[1].registered))
        else:
            self.used[rec.friend] = rec
            self.used = dict(sorted(self.used.items(), key=lambda item: (item[1].last_assigned, item[1].registered)))

    def remove(self, friend: str) -> None:
        self.fresh.pop(friend, None)
        self.used.pop(friend, None)


@define(kw_only=True)
class Master:
    settings: MasterSettings = field(factory=MasterSettings, eq=False)
    accounts: dict[str, Account] = Factory(dict)
    friends: dict[str, FriendRecord] = Factory(dict)
    requesters: dict[str, str] = Factory(dict)  # trusted key -> name
    jobs: dict[int, JobRecord] = Factory(dict)
    granted: int = 0  # points ever granted (Rule 5)
    assignments: int = 0  # counts grants, orders friends least-recently-assigned first
    # Soft state (Rule 6): friend -> (last heartbeat time, busy). Not compared.
    seen: dict[str, tuple[float, bool]] = field(factory=dict, eq=False)
    # Derived from ``friends``, for assignment (see _ProfileQueue). Not compared.
    queues: dict[RenderProfile, _ProfileQueue] = field(factory=dict, eq=False, repr=False)

    def escrow(self) -> int:
        return sum(j.escrow - j.paid - j.refunded for j in self.jobs.values())

    def balances(self) -> int:
        return sum(a.balance for a in self.accounts.values())


def is_live(state: Master, friend: str, now: float) -> bool:
    seen = state.seen.get(friend)
    return seen is not None and 0 <= now - seen[0] <= state.settings.friend_timeout


def available(state: Master, rec: FriendRecord, now: float) -> bool:
    """Live, not busy nor away (paused, outside its schedule), and holding no job (an expired hold counts as none)."""
    seen = state.seen.get(rec.friend)
    if seen is None or not (0 <= now - seen[0] <= state.settings.friend_timeout) or seen[1] or rec.away:
        return False
    return rec.job is None or now >= rec.held_until


# ---------------------------------------------------------------- deciding


def decide(state: Master, command: object) -> list[object]:
    """The events that ``command`` causes, or Rejected; ``state`` is not changed."""
    handler = _DECIDERS.get(type(command))
    if handler is None:
        raise TypeError(f"the master has no decision for {type(command).__name__}")
    return handler(state, command)


def _bind(state: Master, user: str, key: str) -> list[object]:
    """Rule 1: bind a new name to its key; refuse another key."""
    if not user or len(user) > 64 or not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise Rejected("bad-user", f"username {user!r} must be 1-64 letters, digits, '-', '_' or '.'")
    account = state.accounts.get(user)
    if account is None or account.key is None:
        return [UserBound(user=user, key=key, grant=state.settings.starting_grant if account is None else 0)]
    if account.key != key:
        raise Rejected("name-taken", f"username {user!r} belongs to another key")
    return []


def _register_friend(state: Master, c: RegisterFriend) -> list[object]:
    events = _bind(state, c.user, c.key)
    if not c.friend.startswith(c.user + "/") or len(c.friend) > 128:
        raise Rejected("bad-friend", f"friend name {c.friend!r} must be '{c.user}/<name>'")
    if c.capacity < 1:
        raise Rejected("bad-friend", "capacity must be at least 1")
    _check_availability(c.away, c.refuse)
    known = state.friends.get(c.friend)
    if known is None or known.profile != c.profile or known.capacity != c.capacity:
        events.append(FriendRegistered(friend=c.friend, user=c.user, profile=c.profile, capacity=c.capacity, now=c.now))
    events.append(FriendSeen(friend=c.friend, busy=False, now=c.now, away=c.away, refuse=c.refuse))
    return events


MAX_AWAY = 64  # characters of a friend's reason for being away
MAX_REFUSED = 64  # users one friend may refuse


def _check_availability(away: str, refuse: tuple[str, ...]) -> None:
    if len(away) > MAX_AWAY or not away.isprintable():
        raise Rejected("bad-heartbeat", f"'away' is at most {MAX_AWAY} printable characters")
    if len(refuse) > MAX_REFUSED or any(not user or len(user) > 64 for user in refuse):
        raise Rejected("bad-heartbeat", f"'refuse' names at most {MAX_REFUSED} users of 1-64 characters")


def _heartbeat(state: Master, c: Heartbeat) -> list[object]:
    rec = state.friends.get(c.friend)
    if rec is None:
        raise Rejected("unknown-friend", f"friend {c.friend!r} is not registered")
    if state.accounts[rec.user].key != c.key:
        raise Rejected("wrong-key", f"friend {c.friend!r} belongs to another key")
    _check_availability(c.away, c.refuse)
    events: list[object] = [FriendSeen(friend=c.friend, busy=c.busy, now=c.now, away=c.away, refuse=c.refuse)]
    if rec.job is not None and c.last_done == rec.job:
        events.append(FriendReleased(friend=c.friend, job=rec.job, why="done"))
    return events


def _trust(state: Master, c: TrustRequester) -> list[object]:
    if state.requesters.get(c.key) == c.name:
        return []
    return [RequesterTrusted(key=c.key, name=c.name)]


def _grant(state: Master, c: GrantPoints) -> list[object]:
    if c.amount <= 0:
        raise Rejected("bad-grant", "a grant is a positive number of points")
    return [PointsGranted(user=c.user, amount=c.amount, reason=c.reason)]


def _choose(state: Master, c: RequestFriends, job: JobRecord | None, limit: int) -> list[str]:
    """The paper's rule in a fair order: see the module docstring.

    The candidates, in (last_assigned, registered) order, are taken by
    repeatedly picking the first candidate whose owner has the fewest picks so
    far. That is round by round: every owner's first candidate in order, then
    every owner's second, and so on. So once ``limit`` owners are seen, round
    one alone fills the request and the rest of the order need not be read.
    """
    queue = state.queues.get(c.profile)
    if queue is None:
        return []
    skip = set(c.exclude)
    if job is not None:
        skip.update(job.friends)
    by_owner: dict[str, list[tuple[int, FriendRecord]]] = {}  # owner -> its candidates, in order
    position = 0
    for rec in queue.ordered():
        if rec.user == c.submitter or c.submitter in rec.refuses or rec.friend in skip or not available(state, rec, c.now):
            continue
        mine = by_owner.get(rec.user)
        if mine is not None:
            mine.append((position, rec))
        else:
            by_owner[rec.user] = [(position, rec)]
            if len(by_owner) == limit:
                return [candidates[0][1].friend for candidates in by_owner.values()]
        position += 1
    # Fewer owners than wanted: rounds by (picks so far, place in the order).
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


def _request_friends(state: Master, c: RequestFriends) -> list[object]:
    if c.requester not in state.requesters:
        raise Rejected("untrusted", "this requester's key is not trusted by the master's operator")
    if c.want < 1 or c.frames < 1 or c.checks_per_friend < 0:
        raise Rejected("bad-request", "a job needs at least one frame and asks for at least one friend")
    events = _bind(state, c.submitter, c.submitter_key)
    balance = state.accounts[c.submitter].balance if c.submitter in state.accounts else 0
    balance += sum(e.grant for e in events if isinstance(e, UserBound))
    if c.job is None:
        number = max(state.jobs, default=0) + 1
        job = None
        base = c.frames  # M, at the first grant only
    else:
        job = state.jobs.get(c.job)
        if job is None or job.requester != c.requester:
            raise Rejected("unknown-job", f"job {c.job} is not one of this requester's")
        if job.closed:
            raise Rejected("closed", f"job {c.job} is closed")
        if job.submitter != c.submitter:
            raise Rejected("not-submitter", f"job {c.job} was submitted by another user")
        number, base = job.job, 0
    s = c.checks_per_friend if job is None else job.checks_per_friend
    affordable = c.want if s == 0 else max(0, (balance - base) // s)
    if balance < base or affordable < 1:
        raise Rejected(
            "short-balance",
            f"{c.submitter} has {balance} points; this grant needs {base + s * min(c.want, max(affordable, 1))}",
        )
    chosen = _choose(state, c, job, min(c.want, affordable))
    if not chosen:
        raise Rejected("no-friends", f"no live, available friend has the profile {c.profile}")
    for friend in chosen:
        rec = state.friends[friend]
        if rec.job is not None:  # available() let it through: its hold expired
            events.append(FriendReleased(friend=friend, job=rec.job, why="expired"))
    if job is None:
        events.append(
            JobOpened(
                job=number,
                requester=c.requester,
                submitter=c.submitter,
                frames=c.frames,
                checks_per_friend=s,
                profile=c.profile,
                blend_sha256=c.blend_sha256,
                address=c.address,
                now=c.now,
            )
        )
    events.append(
        FriendsAssigned(
            job=number,
            friends=tuple(chosen),
            shortfall=c.want - len(chosen),
            expires=c.now + state.settings.assignment_ttl,
            now=c.now,
        )
    )
    events.append(EscrowFunded(job=number, user=c.submitter, amount=base + s * len(chosen)))
    return events


def _report(state: Master, c: ReportJob) -> list[object]:
    job = state.jobs.get(c.job)
    if job is None or job.requester != c.requester:
        raise Rejected("unknown-job", f"job {c.job} is not one of this requester's")
    if job.closed:
        raise Rejected("closed", f"job {c.job} is closed")
    strangers = (set(c.payouts) | set(c.check_outcomes) | set(c.evicted)) - set(job.friends)
    if strangers:
        raise Rejected("not-assigned", f"{sorted(strangers)} were never assigned to job {c.job}")
    evicted = set(job.evicted) | set(c.evicted)
    if any(c.payouts.get(f, 0) for f in evicted) or job.paid_friends & set(c.evicted):
        raise Rejected("evicted-paid", "an evicted friend gets nothing for the job, and a paid friend is not evicted after")
    if any(p < 0 for p in c.payouts.values()):
        raise Rejected("bad-report", "payouts are never negative")
    total = sum(c.payouts.values())
    if job.paid + total > job.escrow:
        raise Rejected("over-escrow", f"job {c.job} has {job.escrow - job.paid} points in escrow, the report pays {total}")
    events: list[object] = [FriendEvicted(job=c.job, friend=f) for f in c.evicted if f not in job.evicted]
    for friend, points in sorted(c.payouts.items()):
        if points:
            events.append(FriendPaid(job=c.job, friend=friend, user=state.friends[friend].user, points=points))
    for friend, outcomes in sorted(c.check_outcomes.items()):
        run = state.friends[friend].clean_run
        for clean in outcomes:
            run = run + 1 if clean else 0
        if outcomes:
            events.append(CheckRunUpdated(friend=friend, run=run))
    if c.close:
        events.append(
            JobClosed(job=c.job, refund=job.escrow - job.paid - total, head_seq=c.head_seq, head_hash=c.head_hash, now=c.now)
        )
    return events


_DECIDERS: dict[type, Callable[[Master, Any], list[object]]] = {
    RegisterFriend: _register_friend,
    Heartbeat: _heartbeat,
    TrustRequester: _trust,
    GrantPoints: _grant,
    RequestFriends: _request_friends,
    ReportJob: _report,
}

# ---------------------------------------------------------------- evolving


def evolve(state: Master, event: object) -> Master:
    """Apply one event (in place: one task owns the state) and return the state."""
    _EVOLVERS[type(event)](state, event)
    return state


def _account(state: Master, user: str) -> Account:
    return state.accounts.setdefault(user, Account(user=user))


def _user_bound(state: Master, e: UserBound) -> None:
    account = _account(state, e.user)
    account.key = e.key
    account.balance += e.grant
    state.granted += e.grant


def _friend_registered(state: Master, e: FriendRegistered) -> None:
    rec = state.friends.get(e.friend)
    if rec is None:
        rec = state.friends[e.friend] = FriendRecord(
            friend=e.friend, user=e.user, profile=e.profile, capacity=e.capacity, registered=len(state.friends)
        )
        # The newest registration, never assigned: the end of the never-assigned part.
        state.queues.setdefault(e.profile, _ProfileQueue()).fresh[e.friend] = rec
    else:
        if rec.profile != e.profile:
            state.queues[rec.profile].remove(e.friend)
            state.queues.setdefault(e.profile, _ProfileQueue()).place(rec)
        rec.profile, rec.capacity = e.profile, e.capacity


def _friend_seen(state: Master, e: FriendSeen) -> None:
    state.seen[e.friend] = (e.now, e.busy)
    rec = state.friends.get(e.friend)
    if rec is not None:
        rec.away, rec.refuses = e.away, frozenset(e.refuse)


def _friend_released(state: Master, e: FriendReleased) -> None:
    rec = state.friends[e.friend]
    if rec.job == e.job:
        rec.job = None


def _requester_trusted(state: Master, e: RequesterTrusted) -> None:
    state.requesters[e.key] = e.name


def _points_granted(state: Master, e: PointsGranted) -> None:
    _account(state, e.user).balance += e.amount
    state.granted += e.amount


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
    )


def _friends_assigned(state: Master, e: FriendsAssigned) -> None:
    state.assignments += 1
    state.jobs[e.job].friends.extend(e.friends)
    for friend in e.friends:
        rec = state.friends[friend]
        rec.job, rec.held_until, rec.last_assigned = e.job, e.expires, state.assignments
    # The highest counter: these friends move to the end of their profile's order.
    for rec in sorted((state.friends[f] for f in e.friends), key=lambda rec: rec.registered):
        queue = state.queues[rec.profile]
        queue.remove(rec.friend)
        queue.used[rec.friend] = rec


def _escrow_funded(state: Master, e: EscrowFunded) -> None:
    state.accounts[e.user].balance -= e.amount
    state.jobs[e.job].escrow += e.amount


def _friend_paid(state: Master, e: FriendPaid) -> None:
    state.jobs[e.job].paid += e.points
    state.jobs[e.job].paid_friends.add(e.friend)
    _account(state, e.user).balance += e.points


def _friend_evicted(state: Master, e: FriendEvicted) -> None:
    state.jobs[e.job].evicted.append(e.friend)


def _check_run_updated(state: Master, e: CheckRunUpdated) -> None:
    state.friends[e.friend].clean_run = e.run


def _job_closed(state: Master, e: JobClosed) -> None:
    job = state.jobs[e.job]
    job.closed, job.head_seq, job.head_hash = True, e.head_seq, e.head_hash
    state.accounts[job.submitter].balance += e.refund
    job.refunded = e.refund
    for friend in job.friends:
        rec = state.friends[friend]
        if rec.job == e.job:
            rec.job = None


_EVOLVERS: dict[type, Callable[[Master, Any], None]] = {
    UserBound: _user_bound,
    FriendRegistered: _friend_registered,
    FriendSeen: _friend_seen,
    FriendReleased: _friend_released,
    RequesterTrusted: _requester_trusted,
    PointsGranted: _points_granted,
    JobOpened: _job_opened,
    FriendsAssigned: _friends_assigned,
    EscrowFunded: _escrow_funded,
    FriendPaid: _friend_paid,
    FriendEvicted: _friend_evicted,
    CheckRunUpdated: _check_run_updated,
    JobClosed: _job_closed,
}
