"""The master's aggregate: accounts, friends, requesters and jobs, the derived indexes, and the draft a decision plays on.

Invariants: ``JobRecord.state`` is CLOSED exactly when the job closed and
WAITING exactly when it is open with ``waiting`` > 0; ``FriendRecord.state``
is HELD exactly when ``job`` is set (changed only through ``_states``). The
derived indexes (``owners``, ``names``, ``friend_names``, ``queues``,
``waiting``) follow the records and are never logged or compared. ``clone``
shares nothing mutable; a ``Draft`` copies only the records its decision
touches, and never changes the state it reads.
"""

from __future__ import annotations

from itertools import chain
from typing import Any, Callable, Iterator, TypeVar

from attrs import Factory, define, field, fields, frozen

from frender.core._decider import is_durable
from frender.core.master._states import FriendState, JobState
from frender.core.master.events import (
    EscrowFunded,
    FriendEvicted,
    FriendPaid,
    FriendsAssigned,
    JobClosed,
    JobPrioritised,
    ReputationChanged,
)
from frender.core.profile import RenderProfile

__all__ = ["MasterSettings", "Hold", "Account", "FriendRecord", "JobRecord", "Master", "Draft"]

DAY = 86400.0


@frozen(kw_only=True)
class MasterSettings:
    friend_timeout: float = 2.0  # seconds; the paper used 0.2 on a LAN
    starting_grant: int = 0  # free points for a new username would mint points
    assignment_ttl: float = 6 * 3600.0  # a held friend is freed after this
    trust_threshold: int = 3  # the requester's own checks passed in a row to be trusted (Rule 7)
    # Rule 7: trust also takes this many jobs and distinct requesters whose own checks the friend passed since
    # its last failure; a report raises reputation by at most trust_per_job; trust lapses when the last pass is
    # older than trust_ttl (seconds of the events' own clocks). 1, 1, 0, 0: the rule before (one job's checks).
    trust_jobs: int = 3
    trust_requesters: int = 2
    trust_per_job: int = 2
    trust_ttl: float = 60 * DAY
    # Rule 12: a friend's points from a job are held until a later job's own checks pass or this long after; 0: paid at once.
    hold_ttl: float = 14 * DAY


@frozen(kw_only=True)
class Hold:
    """Rule 12: points a friend earned in ``job``, not spendable before ``until`` (or a later job's confirmation)."""

    friend: str
    job: int
    points: int
    until: float


@define(kw_only=True)
class Account:
    user: str
    key: str | None = None  # None until the name is first used with a key
    balance: int = 0
    holds: tuple[Hold, ...] = ()  # Rule 12: held points, oldest first

    @property
    def held(self) -> int:
        return sum(h.points for h in self.holds)


@define(kw_only=True)
class FriendRecord:
    friend: str
    user: str
    profile: RenderProfile
    capacity: int
    registered: int  # registration order, the last tie-break
    job: int | None = None
    held_until: float = 0.0
    state: FriendState = FriendState.FREE  # FREE or HELD (``_states.FRIEND``); AWAY is soft, never stored
    last_assigned: int = 0  # the assignment counter at its last job (0: never)
    clean_run: int = 0
    # Soft state from the last heartbeat (Rule 6), not compared: why it is away, whose jobs it refuses.
    away: str = field(default="", eq=False)
    refuses: frozenset[str] = field(factory=frozenset, eq=False)
    reputation: int = 0  # Rule 7: the requester's own checks passed since the last failure
    # Rule 7, since the last failure: jobs and requesters whose own checks it passed, when it last passed one.
    trust_jobs: int = 0
    last_trust_job: int = 0
    requesters: frozenset[str] = frozenset()
    checked_at: float = 0.0
    earned: int = 0  # Rule 9: points paid to it since its trust was last lost (its stake)


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
    state: JobState = JobState.OPEN  # ``_states.JOB``
    friends: list[str] = Factory(list)
    evicted: list[str] = Factory(list)
    paid_friends: set[str] = Factory(set)  # friends paid by a report
    escrow: int = 0
    paid: int = 0
    refunded: int = 0
    outcome: str = ""  # once closed: "finished", "cancelled" or "failed", as its report said ("": not said)
    priority: int = 0  # Rule 10
    waiting: int = 0  # friends still missing after its last grant (Rule 10)
    head_seq: int = 0
    head_hash: str = ""
    opening: str = ""  # the requester's name for the job (JobOpened.opening)

    @property
    def closed(self) -> bool:
        return self.state is JobState.CLOSED


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

    def held(self) -> int:
        """Points paid but held (Rule 12): Rule 5 counts them with the balances."""
        return sum(a.held for a in self.accounts.values())

    def queue(self, profile: RenderProfile, trusted: bool) -> _ProfileQueue:
        """The queue of ``profile``'s machine and trust, made when first needed."""
        return self.queues.setdefault((profile.machine(), trusted), _ProfileQueue())

    def clone(self) -> Master:
        """A copy sharing nothing mutable with this state, to decide on (a shell's draft) while this one waits for the log.

        Containers and records are copied (``_copied``); immutable values
        (settings, profiles, strings, tuples, frozensets) are shared; the
        queues are rebuilt over the copied friend records, in the same order.
        """
        draft = _copied(self)
        draft.queues = {}
        for key, queue in self.queues.items():
            twin = draft.queues[key] = _ProfileQueue()
            twin.fresh = {friend: draft.friends[friend] for friend in queue.fresh}
            twin.used = {friend: draft.friends[friend] for friend in queue.used}
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


_R = TypeVar("_R", Account, FriendRecord, JobRecord)


def _shallow(rec: _R) -> _R:
    """A copy of a record sharing its field values (twice as fast as ``copy.copy`` on a slotted attrs class)."""
    twin = object.__new__(type(rec))
    for name in _FIELDS[type(rec)]:
        object.__setattr__(twin, name, getattr(rec, name))
    return twin


_FIELDS = {cls: tuple(a.name for a in fields(cls)) for cls in (Account, FriendRecord, JobRecord)}

# The events whose evolvers read their job's record (the others create it, or change only friends and accounts).
_READ_THEIR_JOB = frozenset({JobPrioritised, FriendsAssigned, EscrowFunded, FriendPaid, FriendEvicted, JobClosed, ReputationChanged})


class Draft:
    """A decision in progress: ``state`` as it was, and ``view``, where each event is played as it is emitted.

    The view holds a copy of each account, friend and job the decision reads
    through it (``account``, ``friend``, ``job``) or names in an event, so a
    later rule reads balances and records as the earlier events left them.
    Copying only those keeps a decision's cost independent of the farm's size
    (a whole ``Master.clone`` of 5,000 friends takes tens of milliseconds);
    what the whole farm says (queues, liveness, names, waiting jobs) is read
    from ``state``, which no event of the decision has changed yet. Soft
    events (liveness, Rule 6) are recorded but not played: no rule reads back
    the liveness its own decision set.
    """

    def __init__(self, state: Master, play: Callable[[Master, Any], object]) -> None:
        self.state = state
        self.events: list[object] = []
        self._play = play
        self._view: Master | None = None

    @property
    def view(self) -> Master:
        """The records the decision touched, as its events left them (made at the first touch: a heartbeat needs none)."""
        if self._view is None:
            s = self.state
            self._view = Master(settings=s.settings, requesters=dict(s.requesters), granted=s.granted, assignments=s.assignments)
        return self._view

    def account(self, user: str) -> Account | None:
        if user not in self.view.accounts and (account := self.state.accounts.get(user)) is not None:
            self.view.accounts[user] = _shallow(account)
        return self.view.accounts.get(user)

    def friend(self, name: str) -> FriendRecord | None:
        if name not in self.view.friends and (rec := self.state.friends.get(name)) is not None:
            self.view.friends[name] = _shallow(rec)  # every field is immutable
        return self.view.friends.get(name)

    def job(self, number: int) -> JobRecord | None:
        if number not in self.view.jobs and (job := self.state.jobs.get(number)) is not None:
            rec = self.view.jobs[number] = _shallow(job)
            rec.friends, rec.evicted, rec.paid_friends = list(job.friends), list(job.evicted), set(job.paid_friends)
            if number in self.state.waiting:
                self.view.waiting[number] = rec
        return self.view.jobs.get(number)

    def emit(self, event: object) -> None:
        """Record ``event`` and play it on the view (a durable one), with every record it names copied there first."""
        self.events.append(event)
        if is_durable(event):
            self._touch(event)
            self._play(self.view, event)

    def _touch(self, event: object) -> None:
        kind = type(event)
        if kind in _READ_THEIR_JOB:
            job = self.job(getattr(event, "job"))
            if kind is JobClosed and job is not None:  # a close refunds the submitter, releases the friends holding the job
                self.account(job.submitter)
                for friend in job.friends:
                    if self.state.friends[friend].job == job.job:
                        self.friend(friend)
        for name in (getattr(event, "friend", None), *getattr(event, "friends", ())):
            if name is not None:
                self.friend(name)
        for user in (getattr(event, "user", None), getattr(event, "to", None)):
            if user is not None:
                self.account(user)
