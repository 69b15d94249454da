"""The master's decider: the registry of friends and requesters, and the points ledger.

Theory of operation. The master is one aggregate, because an assignment moves
points (escrow) and holds friends in the same step. Invariants it keeps:

Rule 1: an account is a key. A username is bound only by its owner (an
        explicit CreateAccount, or the first job it submits); nobody else acts
        under that name, a key holds one name, a grant names the account's key
        as well as its name and is refused unless that key is the one bound
        (the event records it), and a friend registers under a user only with
        that user's key (a user's machines share its key). A new username or
        friend name is in the safe alphabet and unique in its normalised form
        (``frender.core.names``); names already logged replay as they were.
Rule 2: only requesters the operator trusts get friends, and a requester
        reports only on its own jobs.
Rule 3: a friend holds at most one job; it is free again when a heartbeat says
        the job is done, the job closes, or the assignment expires.
Rule 4: a submitter's own friends never render its jobs, nor do friends that
        refuse the submitter or are away (paused, outside their schedule).
Rule 5: sum(balances) + sum(open escrow) == points ever granted, after every event.
Rule 6: liveness (heartbeats) is soft state: never logged, so after a restart
        friends are live again only once they heartbeat.
Rule 7: reputation is earned only from the requester's own renders (own checks
        and arbitrations, as reported); a friend found wrong drops to 0.
        Friends at or above ``trust_threshold`` are trusted, the rest
        probationary.
Rule 8: a job never holds a majority of probationary friends while a trusted
        friend of its profile is live; fresh friends are never preferred.
Rule 9: stakes. Points for a job are paid only by the report that closes it; a
        friend found wrong (evicted) forfeits them and its owner is fined the
        points a friend of that job would have earned (its fair share of the
        frames plus its escrowed checks), capped at the owner's balance. The
        fine goes to the job's submitter, the party that paid for the
        re-renders, so Rule 5 holds with no account of its own.

The assignment rule is the paper's (the first N live, available friends with
the job's profile) in a fair order: trusted friends first, then probationary
ones up to a minority; within each, least recently assigned first with
never-assigned friends last, owners mixed so one user's friends do not fill a
job.

Rule 10: priority. A job granted fewer friends than it asked for waits for
        the rest (``JobRecord.waiting``, from its last grant's shortfall,
        until the next grant or its close). A request grants no friend that
        an open job of strictly higher priority still waits for: free friends
        go to waiting jobs by priority, and equal priorities are served as
        they ask (a job that waits never blocks a newer job of its priority).
Rule 11: the queue. A new job for which no friend is free (all busy, away, or
        kept for waiting jobs of a higher priority) opens with none granted
        and waits for all it asked for: its escrow holds its M frame points,
        and the s check points per friend come with each friend granted. It
        is refused (``no-friends``) only when no registered friend of its
        profile could ever serve it (none exists but the submitter's own or
        ones refusing the submitter). A later request for an open job that
        finds no friend free is refused, and asked again.

Assignment order is kept, not recomputed: ``Master.queues`` holds, per
profile and trust (trusted or probationary), the friends in assignment order
(``_ProfileQueue.ordered``), so a request walks that order and usually stops
after a few friends instead of sorting them all. Queues are keyed by
``RenderProfile.machine()``; a job of a GPU engine (EEVEE) takes from its queue
only the friends whose GL renderer is the requester's (``RenderProfile.renders``).
"""

from __future__ import annotations

import heapq
from itertools import chain
from typing import Any, Callable, ClassVar, Iterator, TypeVar

from attrs import Factory, define, field, fields, frozen

from frender.core._decider import Rejected
from frender.core.names import NAME_RULE, is_valid_name, normalised
from frender.core.profile import RenderProfile

__all__ = [
    # settings and state
    "MasterSettings",
    "Master",
    "FriendRecord",
    "Account",
    "JobRecord",
    # commands
    "CreateAccount",
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
    "ReputationChanged",
    "FriendFined",
    "JobClosed",
    "JobPrioritised",
    "EVENTS",
    # the decider
    "decide",
    "evolve",
    "is_live",
    "available",
    "is_trusted",
    "fine_for",
]


@frozen(kw_only=True)
class MasterSettings:
    friend_timeout: float = 2.0  # seconds; the paper used 0.2 on a LAN
    starting_grant: int = 0  # free points for a new username would mint points
    assignment_ttl: float = 6 * 3600.0  # a held friend is freed after this
    trust_threshold: int = 3  # the requester's own checks passed in a row to be trusted (Rule 7)


# ---------------------------------------------------------------- commands


@frozen(kw_only=True)
class CreateAccount:
    """The owner of ``key`` binds ``user`` to it (Rule 1)."""

    user: str
    key: str  # proven by the transport


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
    """The operator funds the account ``user`` bound to ``key``: the fingerprint its owner gave, never the name alone (Rule 1)."""

    user: str
    key: str
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
    priority: int = 0  # of a new job (Rule 10); a later request uses the job's own
    opening: str = ""  # of a new job: the requester's name for it, logged before it asked (found again by it)
    now: float


@frozen(kw_only=True)
class ReportJob:
    """The requester's account of a job: points per friend, check outcomes, evictions."""

    requester: str
    job: int
    payouts: dict[str, int] = Factory(dict)  # friend -> final frames + agreeing checks
    check_outcomes: dict[str, tuple[bool, ...]] = Factory(dict)  # friend -> clean? in order
    # friend -> passed? in order, of the requester's own renders only (own checks, arbitrations): Rule 7
    own_outcomes: dict[str, tuple[bool, ...]] = Factory(dict)
    evicted: tuple[str, ...] = ()
    evidence: dict[str, str] = Factory(dict)  # evicted friend -> why, in words (frame, hashes, figures)
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
    key: str = field(default="", metadata={"omit_if_default": True})  # the account's key; "" in logs from before grants named it


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
    opening: str = field(default="", metadata={"omit_if_default": True})  # RequestFriends.opening


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
class ReputationChanged:
    """Rule 7: the requester's own renders passed (or failed) this friend's frames."""

    tag: ClassVar[str] = "reputation_changed.v1"
    friend: str
    job: int
    reputation: int  # after this job's outcomes
    passed: int
    failed: int


@frozen(kw_only=True)
class FriendFined:
    """Rule 9: an evicted friend forfeits its points; its owner pays ``points`` to the submitter."""

    tag: ClassVar[str] = "friend_fined.v1"
    job: int
    friend: str
    user: str  # the friend's owner, who pays
    to: str  # the job's submitter, who receives
    forfeited: int  # what it would have earned in the job (the fine asked)
    points: int  # the fine taken: ``forfeited`` capped at the owner's balance
    evidence: str


@frozen(kw_only=True)
class JobClosed:
    tag: ClassVar[str] = "job_closed.v1"
    job: int
    refund: int  # escrow returned to the submitter
    head_seq: int
    head_hash: str
    now: float


@frozen(kw_only=True)
class JobPrioritised:
    """A new job's priority, when it is not 0 (Rule 10)."""

    tag: ClassVar[str] = "job_prioritised.v1"
    job: int
    priority: int


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
    ReputationChanged,
    FriendFined,
    JobPrioritised,
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
    reputation: int = 0  # Rule 7: the requester's own checks passed since the last failure


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
    priority: int = 0  # Rule 10
    waiting: int = 0  # friends still missing after its last grant (Rule 10)
    head_seq: int = 0
    head_hash: str = ""
    opening: str = ""  # the requester's name for the job (JobOpened.opening)


class _ProfileQueue:
    """One profile's friends in assignment order: least recently assigned, then registration.

    The assigned friends first, each assignment moving its friends to the end
    (its counter is the highest), ordered among themselves by registration;
    then the never-assigned ones (last_assigned 0) in registration order, so a
    fresh name never jumps the queue (Rule 8).
    Derived from the friend records by the evolvers; never logged or compared.
    """

    __slots__ = ("fresh", "used")

    def __init__(self) -> None:
        self.fresh: dict[str, FriendRecord] = {}
        self.used: dict[str, FriendRecord] = {}

    def ordered(self) -> Iterator[FriendRecord]:
        return chain(self.used.values(), self.fresh.values())

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
    owners: dict[str, str] = field(factory=dict, eq=False)  # key -> its one username (Rule 1); derived
    # Derived, for uniqueness (Rule 1): a normalised username -> the bound name; a normalised "user/name" -> the friend.
    names: dict[str, str] = field(factory=dict, eq=False)
    friend_names: dict[str, str] = field(factory=dict, eq=False)
    # Soft state (Rule 6): friend -> (last heartbeat time, busy). Not compared.
    seen: dict[str, tuple[float, bool]] = field(factory=dict, eq=False)
    # Derived from ``friends``, for assignment (see _ProfileQueue). Not compared.
    queues: dict[tuple[RenderProfile, bool], _ProfileQueue] = field(factory=dict, eq=False, repr=False)  # by profile.machine()
    # Derived from ``jobs``: open jobs still waiting for friends (Rule 10). Not compared.
    waiting: dict[int, JobRecord] = field(factory=dict, eq=False, repr=False)

    def escrow(self) -> int:
        return sum(j.escrow - j.paid - j.refunded for j in self.jobs.values())

    def balances(self) -> int:
        return sum(a.balance for a in self.accounts.values())

    def clone(self) -> Master:
        """A copy sharing nothing mutable with this state, to decide on (a shell's draft) while this one waits for the log.

        Containers and records are copied (``_copied``); immutable values
        (settings, profiles, strings, tuples, frozensets) are shared; the
        queues are rebuilt over the copied friend records, in the same order.
        """
        draft = _copied(self)
        draft.queues = {}
        for key, queue in self.queues.items():
            copy = draft.queues[key] = _ProfileQueue()
            copy.fresh = {friend: draft.friends[friend] for friend in queue.fresh}
            copy.used = {friend: draft.friends[friend] for friend in queue.used}
        draft.waiting = {job: draft.jobs[job] for job in self.waiting}  # the clone's own records, as ``jobs`` holds them
        return draft


_Value = TypeVar("_Value")


def _copied(value: _Value) -> _Value:
    """``value`` sharing nothing mutable: what cannot be hashed (dicts, lists, sets, ``define`` records) is copied, level
    by level; what can (numbers, strings, tuples, frozen records) is immutable here and shared."""
    if type(value).__hash__ is not None:
        return value
    if isinstance(value, dict):
        return type(value)({key: _copied(item) for key, item in value.items()})
    if isinstance(value, list):
        return type(value)(_copied(item) for item in value)
    if isinstance(value, set):
        return type(value)(value)
    record: Any = value
    return type(value)(**{a.alias: _copied(getattr(record, a.name)) for a in fields(type(record)) if a.init})


def is_live(state: Master, friend: str, now: float) -> bool:
    seen = state.seen.get(friend)
    return seen is not None and 0 <= now - seen[0] <= state.settings.friend_timeout


def available(state: Master, rec: FriendRecord, now: float) -> bool:
    """Live, not busy nor away (paused, outside its schedule), and holding no job (an expired hold counts as none)."""
    seen = state.seen.get(rec.friend)
    if seen is None or not (0 <= now - seen[0] <= state.settings.friend_timeout) or seen[1] or rec.away:
        return False
    return rec.job is None or now >= rec.held_until


def is_trusted(state: Master, rec: FriendRecord) -> bool:
    """Rule 7: enough of the requester's own checks passed in a row."""
    return rec.reputation >= state.settings.trust_threshold


def fine_for(job: JobRecord) -> int:
    """Rule 9: what a friend of ``job`` would have earned: its share of the frames and its escrowed checks."""
    return -(-job.frames // max(1, len(job.friends))) + job.checks_per_friend


# ---------------------------------------------------------------- deciding


def decide(state: Master, command: object) -> list[object]:
    """The events that ``command`` causes, or Rejected; ``state`` is not changed."""
    handler = _DECIDERS.get(type(command))
    if handler is None:
        raise TypeError(f"the master has no decision for {type(command).__name__}")
    return handler(state, command)


def _bind(state: Master, user: str, key: str) -> list[object]:
    """Rule 1: bind a new name (in the alphabet, unique once normalised) to its key; refuse another key."""
    account = state.accounts.get(user)
    if account is not None and account.key is not None:  # bound already, perhaps before today's alphabet: its owner goes on
        if account.key != key:
            raise Rejected("name-taken", f"username {user!r} belongs to another key")
        return []
    if not is_valid_name(user):
        raise Rejected("bad-user", f"username {user[:64]!r} must be {NAME_RULE}")
    holder = state.names.get(normalised(user))
    if holder is not None:
        raise Rejected("name-taken", f"username {user!r} is the name {holder!r} (names are compared without case): choose another")
    held = state.owners.get(key)
    if held is not None and held != user:
        raise Rejected("key-taken", f"this key already holds the account {held!r}; one key, one account")
    return [UserBound(user=user, key=key, grant=state.settings.starting_grant if account is None else 0)]


def _bound(state: Master, user: str) -> Account:
    """The account named ``user``, once its owner bound it; else a clear refusal (Rule 1)."""
    account = state.accounts.get(user)
    if account is None or account.key is None:
        raise Rejected("unknown-user", f"no account {user!r}: its owner creates it first (frender account create {user} --master ...)")
    return account


def _create_account(state: Master, c: CreateAccount) -> list[object]:
    return _bind(state, c.user, c.key)


def _register_friend(state: Master, c: RegisterFriend) -> list[object]:
    # A friend speaks with its user's key: the name must be bound, to this key.
    if _bound(state, c.user).key != c.key:
        raise Rejected("name-taken", f"username {c.user!r} belongs to another key: a friend registers with its user's key")
    events: list[object] = []
    if not c.friend.startswith(c.user + "/") or len(c.friend) > 64 + 1 + 256:
        raise Rejected("bad-friend", f"friend name {c.friend[:64]!r} must be '{c.user}/<name>'")
    known = state.friends.get(c.friend)
    if known is None:  # a new friend: its name is checked as a username is (one logged before keeps its name)
        name = c.friend.removeprefix(c.user + "/")
        if not is_valid_name(name):
            raise Rejected("bad-friend", f"friend name {name[:64]!r} must be {NAME_RULE}")
        holder = state.friend_names.get(normalised(c.friend))
        if holder is not None:
            raise Rejected("name-taken", f"friend {c.friend!r} is the friend {holder!r} (names are compared without case): choose another")
    if not 1 <= c.capacity <= 1024:
        raise Rejected("bad-friend", "capacity is 1 to 1024 threads")
    _check_availability(c.away, c.refuse)
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
    if not is_valid_name(c.name):
        raise Rejected("bad-name", f"a requester's name {c.name[:64]!r} must be {NAME_RULE}")
    return [RequesterTrusted(key=c.key, name=c.name)]


def _grant(state: Master, c: GrantPoints) -> list[object]:
    if c.amount <= 0:
        raise Rejected("bad-grant", "a grant is a positive number of points")
    account = _bound(state, c.user)
    if not c.key:
        raise Rejected("no-key", f"a grant names the key of the account it funds: ask {c.user!r}'s owner for the fingerprint `frender account show` prints")
    if account.key != c.key:
        raise Rejected(
            "wrong-key",
            f"the account {c.user!r} is bound to another key than {c.key}: these points would go to someone else. "
            "Ask its owner for the fingerprint `frender account show` prints; if that is the key you gave, "
            "someone else bound the name first and its owner binds another one",
        )
    return [PointsGranted(user=c.user, amount=c.amount, reason=c.reason, key=c.key)]


def _choose(state: Master, c: RequestFriends, job: JobRecord | None, limit: int) -> list[str]:
    """The paper's rule in a fair order (see the module docstring), trusted friends first (Rules 7, 8).

    The candidates are walked in (last_assigned, registered) order with the
    never-assigned ones last, and split into trusted and probationary. Each
    part is taken by rounds of owners (``_rounds``). Probationary friends come
    only while they stay a minority of the job's friends, unless no trusted
    friend of the profile is live (a new farm must start somewhere). Once
    ``limit`` trusted owners are seen the rest of the order need not be read.
    """
    skip = set(c.exclude)
    held_trusted = held_probation = 0
    if job is not None:
        skip.update(job.friends)
        for friend in job.friends:
            if friend not in job.evicted:
                if is_trusted(state, state.friends[friend]):
                    held_trusted += 1
                else:
                    held_probation += 1
    trusted, trusted_live = _candidates(state, c, skip, True, limit)
    chosen = _rounds(trusted, limit)
    room = limit - len(chosen)
    if trusted_live or held_trusted:
        # Rule 8: probationary < trusted, counting the friends the job already holds.
        room = min(room, held_trusted + len(chosen) - 1 - held_probation)
    if room <= 0:
        return chosen
    probation, _ = _candidates(state, c, skip, False, room)
    return chosen + _rounds(probation, room)


def _candidates(
    state: Master, c: RequestFriends, skip: set[str], trusted: bool, wanted: int
) -> tuple[dict[str, list[tuple[int, FriendRecord]]], bool]:
    """One part's available candidates by owner, in order, until ``wanted`` owners are seen; and whether one of the part is live."""
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
    priority = c.priority if job is None else job.priority
    ahead = sum(o.waiting for o in state.waiting.values() if o.priority > priority and o.job != number)  # Rule 10
    chosen = _choose(state, c, job, min(c.want, affordable) + ahead)
    chosen = chosen[: max(0, len(chosen) - ahead)]  # the friends at the end of the order are kept for those waiting
    if not chosen and job is not None:  # a later request: the job already waits, its requester asks again
        if ahead:
            raise Rejected("no-friends", f"the free friends are kept for {ahead} waiting friend places of jobs with a higher priority")
        if not _any_could_serve(state, c):  # e.g. the only friends of the profile now refuse the submitter
            raise Rejected("no-friends", f"no friend of this farm with the profile {c.profile} renders for {c.submitter} any more")
        raise Rejected(
            "no-friends",
            f"no live, available friend has the profile {c.profile} (probationary friends alone never fill a job while trusted ones are live)",
        )
    if not chosen and not _any_could_serve(state, c):  # Rule 11: a job that could only wait forever is refused
        raise Rejected(
            "no-friends",
            f"no friend of this farm has the profile {c.profile} (the requester's Blender build and CPU class); the job could never start",
        )
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
                opening=c.opening,
            )
        )
        if c.priority:
            events.append(JobPrioritised(job=number, priority=c.priority))
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


def _any_could_serve(state: Master, c: RequestFriends) -> bool:
    """Whether some registered friend of the profile could ever render the submitter's job (Rule 11): not its own, not refusing it."""
    refused = normalised(c.submitter)
    return any(
        rec.user != c.submitter and refused not in rec.refuses and rec.profile.renders(c.profile)
        for trusted in (True, False)
        if (queue := state.queues.get((c.profile.machine(), trusted))) is not None
        for rec in queue.ordered()
    )


def _report(state: Master, c: ReportJob) -> list[object]:
    job = state.jobs.get(c.job)
    if job is None or job.requester != c.requester:
        raise Rejected("unknown-job", f"job {c.job} is not one of this requester's")
    if job.closed:
        raise Rejected("closed", f"job {c.job} is closed")
    strangers = (set(c.payouts) | set(c.check_outcomes) | set(c.own_outcomes) | set(c.evicted) | set(c.evidence)) - set(job.friends)
    if strangers:
        raise Rejected("not-assigned", f"{sorted(strangers)} were never assigned to job {c.job}")
    if not c.close and any(c.payouts.values()):
        raise Rejected("not-closed", "points for a job are paid by the report that closes it (Rule 9)")
    evicted = set(job.evicted) | set(c.evicted)
    if any(c.payouts.get(f, 0) for f in evicted) or job.paid_friends & set(c.evicted):
        raise Rejected("evicted-paid", "an evicted friend gets nothing for the job, and a paid friend is not evicted after")
    if any(p < 0 for p in c.payouts.values()):
        raise Rejected("bad-report", "payouts are never negative")
    total = sum(c.payouts.values())
    if job.paid + total > job.escrow:
        raise Rejected("over-escrow", f"job {c.job} has {job.escrow - job.paid} points in escrow, the report pays {total}")
    newly_evicted = [f for f in dict.fromkeys(c.evicted) if f not in job.evicted]
    events: list[object] = [FriendEvicted(job=c.job, friend=f) for f in newly_evicted]
    balance = {user: account.balance for user, account in state.accounts.items()}
    for friend, points in sorted(c.payouts.items()):
        if points:
            user = state.friends[friend].user
            events.append(FriendPaid(job=c.job, friend=friend, user=user, points=points))
            balance[user] = balance.get(user, 0) + points
    for friend in newly_evicted:  # Rule 9: the stake
        user = state.friends[friend].user
        asked = fine_for(job)
        taken = max(0, min(asked, balance.get(user, 0))) if user != job.submitter else 0
        balance[user] = balance.get(user, 0) - taken
        events.append(
            FriendFined(job=c.job, friend=friend, user=user, to=job.submitter, forfeited=asked, points=taken, evidence=c.evidence.get(friend, ""))
        )
    for friend, outcomes in sorted(c.check_outcomes.items()):
        run = state.friends[friend].clean_run
        for clean in outcomes:
            run = run + 1 if clean else 0
        if outcomes:
            events.append(CheckRunUpdated(friend=friend, run=run))
    for friend in sorted(set(c.own_outcomes) | set(newly_evicted)):  # Rule 7
        outcomes = c.own_outcomes.get(friend, ())
        reputation = state.friends[friend].reputation
        for passed in outcomes:
            reputation = reputation + 1 if passed else 0
        if friend in evicted:
            reputation = 0
        if reputation != state.friends[friend].reputation or outcomes:
            events.append(
                ReputationChanged(
                    friend=friend, job=c.job, reputation=reputation, passed=sum(outcomes), failed=len(outcomes) - sum(outcomes)
                )
            )
    if c.close:
        events.append(
            JobClosed(job=c.job, refund=job.escrow - job.paid - total, head_seq=c.head_seq, head_hash=c.head_hash, now=c.now)
        )
    return events


_DECIDERS: dict[type, Callable[[Master, Any], list[object]]] = {
    CreateAccount: _create_account,
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
    state.owners[e.key] = e.user
    state.names.setdefault(normalised(e.user), e.user)
    account.balance += e.grant
    state.granted += e.grant


def _friend_registered(state: Master, e: FriendRegistered) -> None:
    rec = state.friends.get(e.friend)
    if rec is None:
        rec = state.friends[e.friend] = FriendRecord(
            friend=e.friend, user=e.user, profile=e.profile, capacity=e.capacity, registered=len(state.friends)
        )
        state.friend_names.setdefault(normalised(e.friend), e.friend)
        # The newest registration, never assigned: the end of the never-assigned part.
        state.queues.setdefault((e.profile.machine(), is_trusted(state, rec)), _ProfileQueue()).fresh[e.friend] = rec
    else:
        if rec.profile != e.profile:
            state.queues[(rec.profile.machine(), is_trusted(state, rec))].remove(e.friend)
            state.queues.setdefault((e.profile.machine(), is_trusted(state, rec)), _ProfileQueue()).place(rec)
        rec.profile, rec.capacity = e.profile, e.capacity


def _friend_seen(state: Master, e: FriendSeen) -> None:
    state.seen[e.friend] = (e.now, e.busy)
    rec = state.friends.get(e.friend)
    if rec is not None:
        rec.away, rec.refuses = e.away, frozenset(normalised(user) for user in e.refuse)


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
        opening=e.opening,
    )


def _friends_assigned(state: Master, e: FriendsAssigned) -> None:
    state.assignments += 1
    job = state.jobs[e.job]
    job.friends.extend(e.friends)
    job.waiting = max(0, e.shortfall)
    if job.waiting:
        state.waiting[e.job] = job
    else:
        state.waiting.pop(e.job, None)
    for friend in e.friends:
        rec = state.friends[friend]
        rec.job, rec.held_until, rec.last_assigned = e.job, e.expires, state.assignments
    # The highest counter: these friends move to the end of their profile's order.
    for rec in sorted((state.friends[f] for f in e.friends), key=lambda rec: rec.registered):
        queue = state.queues[(rec.profile.machine(), is_trusted(state, rec))]
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


def _reputation_changed(state: Master, e: ReputationChanged) -> None:
    rec = state.friends[e.friend]
    was = is_trusted(state, rec)
    rec.reputation = e.reputation
    if is_trusted(state, rec) != was:  # it changes queues, keeping its place in the order
        state.queues[(rec.profile.machine(), was)].remove(rec.friend)
        state.queues.setdefault((rec.profile.machine(), not was), _ProfileQueue()).place(rec)


def _friend_fined(state: Master, e: FriendFined) -> None:
    _account(state, e.user).balance -= e.points
    _account(state, e.to).balance += e.points


def _job_closed(state: Master, e: JobClosed) -> None:
    job = state.jobs[e.job]
    job.closed, job.head_seq, job.head_hash = True, e.head_seq, e.head_hash
    job.waiting = 0
    state.waiting.pop(e.job, None)
    state.accounts[job.submitter].balance += e.refund
    job.refunded = e.refund
    for friend in job.friends:
        rec = state.friends[friend]
        if rec.job == e.job:
            rec.job = None


def _job_prioritised(state: Master, e: JobPrioritised) -> None:
    state.jobs[e.job].priority = e.priority


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
    JobPrioritised: _job_prioritised,
    ReputationChanged: _reputation_changed,
    FriendFined: _friend_fined,
}
