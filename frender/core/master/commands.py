"""The master's commands: what an operator, a friend or a requester asks of it (imperative, validated by ``decide``)."""

from __future__ import annotations

from attrs import Factory, frozen

from frender.core.profile import RenderProfile

__all__ = ["CreateAccount", "RegisterFriend", "Heartbeat", "TrustRequester", "GrantPoints", "RequestFriends", "ReportJob", "COMMANDS"]



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
    outcome: str = ""  # how the job ended at the requester: "finished", "cancelled" or "failed" ("": not said)



COMMANDS: tuple[type, ...] = (CreateAccount, RegisterFriend, Heartbeat, TrustRequester, GrantPoints, RequestFriends, ReportJob)
