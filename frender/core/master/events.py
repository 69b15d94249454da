"""The master's events: facts in the past tense, each with a stable tag.

Invariants: a tag is never renamed and a new meaning gets a new tag; a field
added to a logged event has a default left out of the body when default
(``omit_if_default``), so every log ever written replays byte for byte.
Events with ``durable = False`` (liveness, Rule 6) are evolved, never logged.
"""

from __future__ import annotations

from typing import ClassVar

from attrs import field, frozen

from frender.core.profile import RenderProfile

__all__ = [
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
    "HoldReleased",
    "HoldForfeited",
    "EVENTS",
]



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
    # Rule 12: the points are held (not spendable) until then, or until a later job's own checks confirm the
    # friend; 0 in logs from before holds (paid at once).
    held_until: float = field(default=0.0, metadata={"omit_if_default": True})


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
    # The report's time (Rule 7's decay counts from the last pass); 0 in logs from before it, and for a lapse.
    now: float = field(default=0.0, metadata={"omit_if_default": True})


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
    stake: int = field(default=0, metadata={"omit_if_default": True})  # Rule 9: the part of ``forfeited`` its trust was bought with


@frozen(kw_only=True)
class JobClosed:
    tag: ClassVar[str] = "job_closed.v1"
    job: int
    refund: int  # escrow returned to the submitter
    head_seq: int
    head_hash: str
    now: float
    outcome: str = field(default="", metadata={"omit_if_default": True})  # as the report said (ReportJob.outcome)


@frozen(kw_only=True)
class JobPrioritised:
    """A new job's priority, when it is not 0 (Rule 10)."""

    tag: ClassVar[str] = "job_prioritised.v1"
    job: int
    priority: int


@frozen(kw_only=True)
class HoldReleased:
    """Rule 12: held points become spendable: a later job's own checks confirmed the friend, or the hold ran out."""

    tag: ClassVar[str] = "hold_released.v1"
    user: str
    friend: str
    job: int  # the job that paid them
    points: int
    why: str  # "confirmed" or "matured"


@frozen(kw_only=True)
class HoldForfeited:
    """Rule 12: a caught owner's held points go back to the submitter of the job that paid them."""

    tag: ClassVar[str] = "hold_forfeited.v1"
    user: str
    friend: str
    job: int  # the job that paid them
    to: str  # that job's submitter
    points: int
    caught: int  # the job its owner's friend was caught in


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
    HoldReleased,
    HoldForfeited,
)

