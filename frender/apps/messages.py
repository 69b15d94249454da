"""The application messages: what friends, requesters, clients and operators say.

Each is a frozen, tagged attrs class sent through the transports' RPC; a reply
is one of these too. A refusal is the transport's ``Refused(code, reason)``,
which the caller sees as ``RemoteError(code, reason)``. docs/protocol.md lists
them with who may send each.

Every message from a peer is bounded before anyone acts on it
(``check_bounds``): strings at most 256 characters unless ``BOUNDS`` says
otherwise, numbers finite and in range, collections of bounded length. A
message out of bounds is refused with code "bad-input", naming the field.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, TypeVar

import attrs
from attrs import Factory, frozen

from frender import codec
from frender.apps.asks import Asks, Ok
from frender.apps.requester_messages import (
    Cancel,
    Cancelled,
    CropBox,
    DashboardLink,
    DashboardLinkReply,
    FrameStored,
    FriendLine,
    GiveBack,
    HaveUploads,
    JobLine,
    Jobs,
    JobsReply,
    NoWork,
    Progress,
    ProgressReply,
    Recall,
    Submit,
    Submitted,
    UploadsWanted,
    WantWork,
    Work,
)
from frender.core.profile import RenderProfile
from frender.transports import ProtocolError, Refused, Session, SignedAssignment

__all__ = [
    "Asks",
    "ask",
    "checked_reply",
    "reply_of",
    "Ok",
    "check_bounds",
    "BOUNDS",
    "STATUS_PAGE",
    "JOB_FRIENDS_SHOWN",
    # owner -> master
    "CreateAccount",
    "AccountCreated",
    # requester -> master
    "AccountOf",
    "AccountInfo",
    # friend -> master
    "RegisterFriend",
    "Registered",
    "Heartbeat",
    "HeartbeatReply",
    # requester -> master
    "AskFriends",
    "FriendsGranted",
    "GrantedFriendInfo",
    "Report",
    "ReleaseOpening",
    "OpeningReleased",
    "KnownProfiles",
    "Profiles",
    # operator -> master
    "Grant",
    "Trust",
    # anyone -> master
    "Status",
    "StatusReply",
    "FriendStanding",
    "Standing",
    "FriendStatus",
    "JobStatus",
    # client -> requester
    "Submit",
    "Submitted",
    "HaveUploads",
    "UploadsWanted",
    "DashboardLink",
    "DashboardLinkReply",
    "Progress",
    "ProgressReply",
    "FriendLine",
    "Recall",
    # friend -> requester
    "WantWork",
    "Work",
    "CropBox",
    "NoWork",
    "GiveBack",
    "FrameStored",
    # client -> requester: my jobs
    "Cancel",
    "Cancelled",
    "Jobs",
    "JobLine",
    "JobsReply",
]

R = TypeVar("R")



# ------------------------------------------------------------- owner -> master


@frozen(kw_only=True)
class CreateAccount(Asks["AccountCreated"]):
    """Bind ``user`` to the key this connection proves (the artist's, shared by the user's friends)."""

    tag: ClassVar[str] = "create_account.v1"
    user: str


@frozen(kw_only=True)
class AccountCreated:
    tag: ClassVar[str] = "account_created.v1"
    user: str
    key: str
    balance: int


# --------------------------------------------------------- requester -> master (accounts)


@frozen(kw_only=True)
class AccountOf(Asks["AccountInfo"]):
    """Which account a key holds, and its balance: a requester checks an uploader before storing anything."""

    tag: ClassVar[str] = "account_of.v1"
    key: str


@frozen(kw_only=True)
class AccountInfo:
    tag: ClassVar[str] = "account_info.v1"
    user: str  # "" when the key holds no account
    balance: int = 0


# ------------------------------------------------------------ friend -> master


@frozen(kw_only=True)
class RegisterFriend(Asks["Registered"]):
    """A friend announces itself under the user its key is bound to."""

    tag: ClassVar[str] = "register_friend.v1"
    user: str
    name: str  # the friend is "user/name"
    profile: RenderProfile
    capacity: int = 1
    away: str = ""  # as in Heartbeat
    refuse: tuple[str, ...] = ()


@frozen(kw_only=True)
class Registered:
    tag: ClassVar[str] = "registered.v1"
    friend: str
    heartbeat_every: float  # seconds; well inside the master's friend_timeout


@frozen(kw_only=True)
class Heartbeat(Asks["HeartbeatReply"]):
    """I am alive. With ``wait`` > 0 and no assignment held, the reply may wait that long for one."""

    tag: ClassVar[str] = "heartbeat.v1"
    friend: str
    busy: bool = False
    last_done: int | None = None
    wait: float = 0.0
    away: str = ""  # why no job now: "paused", "outside schedule", "owner active"; at most 64 characters
    refuse: tuple[str, ...] = ()  # users whose jobs this friend declines (at most 64): never assigned them


@frozen(kw_only=True)
class HeartbeatReply:
    """Holds the friend's signed assignment while it has one; ``requester`` is where to dial."""

    tag: ClassVar[str] = "heartbeat_reply.v1"
    assignment: SignedAssignment | None = None
    requester: str = ""  # frender://host:port#sha256:...


# --------------------------------------------------------- requester -> master


@frozen(kw_only=True)
class AskFriends(Asks["FriendsGranted"]):
    """A trusted requester asks for friends for a new job (job=None) or more for job J."""

    tag: ClassVar[str] = "ask_friends.v1"
    job: int | None = None
    submitter: str
    submitter_key: str  # proven to the requester by the client's own handshake
    frames: int
    want: int
    profile: RenderProfile
    checks_per_friend: int = 1
    exclude: tuple[str, ...] = ()
    blend_sha256: str
    address: str  # the requester's address, for the friends
    priority: int = 0  # of a new job: free friends go to waiting jobs of higher priority first
    opening: str = ""  # of a new job: the requester's name for it, logged before asking (ReleaseOpening finds it)


@frozen(kw_only=True)
class GrantedFriendInfo:
    tag: ClassVar[str] = "granted_friend.v1"
    friend: str
    user: str
    key: str
    reputation: int = 0  # the requester's own checks this friend passed in a row (the master's count)
    clean_run: int = 0  # checks of any kind this friend passed in a row (the master's count): adaptive checks thin with it


@frozen(kw_only=True)
class FriendsGranted:
    tag: ClassVar[str] = "friends_granted.v1"
    job: int
    friends: tuple[GrantedFriendInfo, ...]
    shortfall: int


@frozen(kw_only=True)
class Report(Asks["Ok"]):
    """The requester's account of a job (see core.master.ReportJob)."""

    tag: ClassVar[str] = "report.v1"
    job: int
    payouts: dict[str, int] = Factory(dict)
    check_outcomes: dict[str, tuple[bool, ...]] = Factory(dict)
    evicted: tuple[str, ...] = ()
    own_outcomes: dict[str, tuple[bool, ...]] = Factory(dict)  # the requester's own renders only
    evidence: dict[str, str] = Factory(dict)  # evicted friend -> why
    head_seq: int = 0
    head_hash: str = ""
    close: bool = True
    outcome: str = ""  # how the job ended: "finished", "cancelled" or "failed", for the master's status


@frozen(kw_only=True)
class ReleaseOpening(Asks["OpeningReleased"]):
    """Close, unpaid and refunded, the job the master opened for ``opening`` (AskFriends.opening), if it opened one.

    The requester logs each opening before it asks; one that never reached its
    own log as a job (a crash, a failed link or a failed lay-out between the
    grant and its acceptance) is released, so no points stay held for a job
    nobody runs.
    """

    tag: ClassVar[str] = "release_opening.v1"
    opening: str
    head_seq: int = 0
    head_hash: str = ""


@frozen(kw_only=True)
class OpeningReleased:
    tag: ClassVar[str] = "opening_released.v1"
    job: int | None  # the job the master had opened for it (now closed); None: it opened none


@frozen
class KnownProfiles(Asks["Profiles"]):
    """Which render profiles live friends offer (a requester refuses jobs nobody can render)."""

    tag: ClassVar[str] = "known_profiles.v1"


@frozen(kw_only=True)
class Profiles:
    tag: ClassVar[str] = "profiles.v1"
    live: tuple[RenderProfile, ...]


# ---------------------------------------------------------- operator -> master


@frozen(kw_only=True)
class Grant(Asks["Ok"]):
    tag: ClassVar[str] = "grant.v1"
    user: str
    amount: int
    reason: str = "operator grant"
    key: str = ""  # the fingerprint of the account's key, as its owner gave it; the master refuses any other (and none)


@frozen(kw_only=True)
class Trust(Asks["Ok"]):
    tag: ClassVar[str] = "trust.v1"
    key: str
    name: str


# ------------------------------------------------------------- anyone -> master


# Friends, jobs and balances per status page, and friends named per job: with every name at its bound
# (a friend 321 characters, a profile 8 x 256) a page stays near 0.5 MiB, inside the 1 MiB frame limit.
STATUS_PAGE = (100, 5, 500)
JOB_FRIENDS_SHOWN = 100


@frozen(kw_only=True)
class Status(Asks["StatusReply"]):
    """One page of the master's status; ``pages`` in the reply says how many there are."""

    tag: ClassVar[str] = "status.v1"
    page: int = 0


@frozen(kw_only=True)
class FriendStatus:
    tag: ClassVar[str] = "friend_status.v1"
    friend: str
    live: bool
    busy: bool
    job: int | None
    profile: RenderProfile
    clean_run: int
    away: str = ""  # paused, outside schedule, ...: assigned nothing meanwhile
    reputation: int = 0  # the requester's own checks passed in a row (the master's count)
    trust_threshold: int = 0  # trusted at or above this reputation, on probation below (0: an older master)


@frozen(kw_only=True)
class JobStatus:
    tag: ClassVar[str] = "job_status.v1"
    job: int
    submitter: str
    frames: int
    friends: tuple[str, ...]  # the first JOB_FRIENDS_SHOWN
    evicted: tuple[str, ...]  # the first JOB_FRIENDS_SHOWN
    escrow: int
    paid: int
    closed: bool
    friend_count: int = 0  # all of them, shown or not
    evicted_count: int = 0
    state: str = ""  # one of frender.apps.words.JOB_STATES ("": an older master, which says only closed or not)


@frozen(kw_only=True)
class StatusReply:
    tag: ClassVar[str] = "status_reply.v1"
    friends: tuple[FriendStatus, ...]
    jobs: tuple[JobStatus, ...]
    balances: dict[str, int]  # the caller's own; every account for the operator
    granted: int
    total_balance: int = 0  # what everyone may see: totals
    escrow: int = 0
    accounts: int = 0
    page: int = 0
    pages: int = 1


@frozen(kw_only=True)
class FriendStanding(Asks["Standing"]):
    """How one of my friends stands at the master (its owner's key, or the operator's, asks)."""

    tag: ClassVar[str] = "friend_standing.v1"
    friend: str


@frozen(kw_only=True)
class Standing:
    """A friend's trust and points as the master's log has them."""

    tag: ClassVar[str] = "standing.v1"
    friend: str
    user: str  # its owner: earns its points, pays its fines
    reputation: int  # the requester's own checks passed in a row
    trust_threshold: int  # trusted at or above this reputation, on probation below
    clean_run: int
    earned: int  # points paid for it, all jobs (final frames and agreeing checks)
    jobs_paid: int  # jobs whose closing report paid it
    fined: int  # points its owner was fined for it (Rule 9: caught forging)
    evictions: int  # jobs it was caught in
    balance: int  # its owner's balance: what its points went to, and what a fine is taken from
    job: int | None = None  # the job it holds now: its points there are held until that job closes
    live: bool = False
    # Rule 12: points paid for it that are held (not spendable) until a later job's own checks confirm it or the hold
    # ends; forfeited if it is caught. Rule 7: trust also needs passes in enough jobs of enough requesters.
    held: int = 0
    trusted: bool = False
    trust_jobs: int = 0
    trust_jobs_needed: int = 0
    requesters: int = 0
    requesters_needed: int = 0


codec.register(FriendStanding, Standing)


codec.register(
    Ok,
    CreateAccount,
    AccountCreated,
    AccountOf,
    AccountInfo,
    RegisterFriend,
    Registered,
    Heartbeat,
    HeartbeatReply,
    AskFriends,
    GrantedFriendInfo,
    FriendsGranted,
    Report,
    ReleaseOpening,
    OpeningReleased,
    KnownProfiles,
    Profiles,
    Grant,
    Trust,
    Status,
    FriendStatus,
    JobStatus,
    StatusReply,
)


# What each request is answered with (``Asks``): a reply of another class is the peer's fault.
REPLIES: dict[type, type | tuple[type, ...]] = {
    CreateAccount: AccountCreated,
    AccountOf: AccountInfo,
    RegisterFriend: Registered,
    Heartbeat: HeartbeatReply,
    AskFriends: FriendsGranted,
    Report: Ok,
    ReleaseOpening: OpeningReleased,
    KnownProfiles: Profiles,
    Grant: Ok,
    Trust: Ok,
    Status: StatusReply,
    FriendStanding: Standing,
    Submit: Submitted,
    HaveUploads: UploadsWanted,
    DashboardLink: DashboardLinkReply,
    Progress: ProgressReply,
    Cancel: Cancelled,
    Jobs: JobsReply,
    GiveBack: Ok,
    WantWork: (Work, NoWork),
}


def reply_of(request: Asks[Any]) -> type | tuple[type, ...]:
    """The class (or classes) of the reply ``request`` asks for."""
    return REPLIES[type(request)]


def checked_reply(request: Asks[R], reply: object) -> R:
    """``reply`` as the ``R`` that ``request`` asks for; a reply of any other class is the peer's fault (``ProtocolError``)."""
    expected = reply_of(request)
    if not isinstance(reply, expected):
        raise ProtocolError(f"{type(request).__name__} was answered with {type(reply).__name__}, not {expected}")
    return reply  # type: ignore[return-value]  # checked against the reply the request names


async def ask(session: Session, request: Asks[R]) -> R:
    """``session.call``, typed: the reply ``request`` asks for (``checked_reply``). Raises as ``Session.call`` does."""
    return checked_reply(request, await session.call(request))


# ------------------------------------------------------------------ bounds

NAME = 256  # names, profiles and other short strings
_COLLECTION = 100_000  # items in any tuple or dict
_INT = (-(2**31), 2**31 - 1)
_FLOAT = (-1e12, 1e12)  # finite, and wide enough for Unix times

# (message class, field) -> (low, high): a string's or collection's length, or a number's value.
BOUNDS: dict[tuple[type, str], tuple[float, float]] = {
    (RegisterFriend, "capacity"): (1, 1024),
    (Heartbeat, "wait"): (0.0, 60.0),
    (Submit, "friends"): (1, 1024),
    (Submit, "checks_per_friend"): (0, 16),
    (Submit, "priority"): (-100, 100),
    (AskFriends, "priority"): (-100, 100),
    (Submit, "frames"): (0, 10_000),
    (Submit, "blend_sha256"): (64, 64),
    (AskFriends, "want"): (0, 1024),
    (Report, "evidence"): (0, 1024),
    (Status, "page"): (0, 1_000_000),
}
_TEXT: dict[tuple[type, str], int] = {(Report, "evidence"): 2048, (GiveBack, "error"): 1024}  # strings longer than NAME, per field (dict values included)


def check_bounds(message: object) -> None:
    """Refuse ("bad-input") a peer's message with a string, number or collection out of its bounds."""
    problem = _problem(message, None, NAME)
    if problem is not None:
        where, what = problem
        raise Refused("bad-input", f"{type(message).__name__}{where}: {what}")


_FIELDS: dict[type, tuple[tuple[str, tuple[float, float] | None, int], ...]] = {}


def _fields_of(cls: type) -> tuple[tuple[str, tuple[float, float] | None, int], ...]:
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = tuple((f.name, BOUNDS.get((cls, f.name)), _TEXT.get((cls, f.name), NAME)) for f in attrs.fields(cls))
    return known


def _problem(value: Any, bound: tuple[float, float] | None, text: int) -> tuple[str, str] | None:
    """None when ``value`` is within bounds, else (where, what); ``where`` is built only on the way out of a refusal."""
    kind = type(value)
    if value is None or kind is bool:
        return None
    if kind is str:
        low, high = bound or (0, text)
        if not low <= len(value) <= high:
            return "", f"{len(value)} characters, allowed {int(low)} to {int(high)}"
        return None
    if kind is int:
        low, high = bound or _INT
        if not low <= value <= high:
            return "", f"{value} is outside {low:g} to {high:g}"
        return None
    if kind is float:
        low, high = bound or _FLOAT
        if not math.isfinite(value) or not low <= value <= high:
            return "", f"{value!r} is not a finite number from {low:g} to {high:g}"
        return None
    if kind is bytes:
        return ("", f"{len(value)} bytes, allowed at most 4096") if len(value) > 4096 else None
    if kind in (tuple, list, dict):
        size = len(value)
        high = bound[1] if bound is not None else _COLLECTION
        if size > min(high, _COLLECTION) or (bound is not None and size < bound[0]):
            return "", f"{size} items, allowed at most {int(high)}"
        items = value.items() if kind is dict else enumerate(value)
        for key, item in items:
            if type(key) is str and len(key) > NAME:
                return f" key {key[:40]!r}", f"{len(key)} characters, allowed at most {NAME}"
            inner = _problem(item, None, text)
            if inner is not None:
                return f"[{key!r:.40}]{inner[0]}", inner[1]
        return None
    if attrs.has(kind):
        for name, field_bound, field_text in _fields_of(kind):
            inner = _problem(getattr(value, name), field_bound, field_text)
            if inner is not None:
                return f".{name}{inner[0]}", inner[1]
        return None
    return "", f"unexpected {kind.__name__}"
