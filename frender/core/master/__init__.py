"""The master's decider: the registry of friends and requesters, the points ledger, and assignment.

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
Rule 5: sum(balances) + sum(held) + sum(open escrow) == points ever granted, after every event.
Rule 6: liveness (heartbeats) is soft state: never logged, so after a restart
        friends are live again only once they heartbeat.
Rule 7: trust is costly and fragile. Reputation is earned only from the
        requester's own renders (own checks and arbitrations, as reported),
        at most ``trust_per_job`` (2) a report; a friend is trusted at
        ``trust_threshold`` (3) passed in a row *and* after passing them in
        ``trust_jobs`` (3) jobs of ``trust_requesters`` (2) requesters since
        its last failure, so one job or one requester never makes a friend
        trusted. A requester is told the friend's ``standing``: below the
        threshold until it is trusted. Trust lapses: a trusted friend whose
        last pass is older than ``trust_ttl`` (60 days, by the reports' own
        ``now``, against its heartbeat's or a request's) is dropped below the
        threshold by its first heartbeat or grant past that, and serves as a
        probationary friend until its next job's own checks pass.
        It is lost at once and farm-wide when the friend is found wrong: an
        eviction (interim or closing report) drops its reputation, jobs and
        requesters to 0, and those of every other friend of its owner (an
        account is a key its machines share: one party). Friends that are not
        trusted are probationary.
Rule 8: a job never holds a majority of probationary friends while a trusted
        friend of its profile is live; fresh friends are never preferred.
Rule 9: stakes. Points for a job are paid only by the report that closes it; a
        friend found wrong (evicted) forfeits them and its owner is fined the
        points a friend of that job would have earned (its fair share of the
        frames plus its escrowed checks) plus the friend's stake: the points
        paid to it since its trust was last lost (what its trust was bought
        with), less the holds it just forfeited (Rule 12); capped at the
        owner's balance. The fine goes to the job's submitter, the party that
        paid for the re-renders, so Rule 5 holds with no account of its own.

The assignment rule is the paper's (the first N live, available friends with
the job's profile) in a fair order (``_assignment``).

The assignment rule is the paper's (the first N live, available friends with
the job's profile) in a fair order (``_assignment``).

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
Rule 12: holds. A friend's points from a job are held, not spendable, until a
        later job's own checks pass it (``confirmed``) or ``hold_ttl`` (14 days)
        after the report that paid them (``matured``, released when its owner
        next submits or is fined). When a friend is caught, every hold of its
        owner still running is forfeited to the submitter of the job that paid
        it (``hold_forfeited.v1``), so work no independent check confirmed is
        paid back, and no account launders held points by being cheated on.

Assignment order is kept, not recomputed: ``Master.queues`` holds, per
profile and trust (trusted or probationary), the friends in assignment order
(``_ProfileQueue.ordered``), so a request walks that order and usually stops
after a few friends instead of sorting them all. Queues are keyed by
``RenderProfile.machine()``; a job of a GPU engine (EEVEE) takes from its queue
only the friends whose GL renderer is the requester's (``RenderProfile.renders``).

The package. ``_states`` holds the transition tables, the guard of every
command: a job is open, waiting (Rule 10) or closed; a friend is free or held
(Rule 3), and at a given time away (Rules 4, 6); a friend in a job is
assigned, paid or evicted (Rule 9). A step a table does not allow is refused
("can't handle ReportJob when job 3 is closed") and changes nothing. The rules
live in ``_registry`` (friends, liveness, queues, names, requesters: Rules 1,
2, 6, 7), ``_ledger`` (accounts, grants, escrow, payouts, holds, fines: Rules 1,
5, 9, 12), ``_assignment`` (requests, grants, waiting jobs, releases: Rules 3, 4, 8,
10, 11) and ``_reports`` (a job's report: Rules 7, 9, 12). ``decide`` plays a
command's events on a ``Draft`` (copies of just the records they touch)
through the same evolvers as ``evolve``, so a rule reads balances and records
as the decision's earlier events left them.
"""

from __future__ import annotations

from frender.core.master._master import _ProfileQueue as _ProfileQueue  # the queues' type, for the tests of clones
from frender.core.master._master import Account, Draft, FriendRecord, Hold, JobRecord, Master, MasterSettings
from frender.core.master._machine import decide, evolve
from frender.core.master._registry import MAX_AWAY, MAX_REFUSED, available, friend_state, is_live, is_trusted, lapsed, standing
from frender.core.master._assignment import no_friends_cause
from frender.core.master._ledger import fine_for
from frender.core.master._reports import member_state
from frender.core.master._states import FriendState, JobState, MemberState
from frender.core.master.commands import (
    CreateAccount,
    GrantPoints,
    Heartbeat,
    RegisterFriend,
    ReportJob,
    RequestFriends,
    TrustRequester,
)
from frender.core.master.events import (
    EVENTS,
    CheckRunUpdated,
    EscrowFunded,
    FriendEvicted,
    FriendFined,
    FriendPaid,
    FriendRegistered,
    FriendReleased,
    FriendSeen,
    FriendsAssigned,
    HoldForfeited,
    HoldReleased,
    JobClosed,
    JobOpened,
    JobPrioritised,
    PointsGranted,
    ReputationChanged,
    RequesterTrusted,
    UserBound,
)

__all__ = [
    # settings and state
    "MasterSettings",
    "Master",
    "FriendRecord",
    "Account",
    "Hold",
    "JobRecord",
    "Draft",
    "JobState",
    "FriendState",
    "MemberState",
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
    "HoldReleased",
    "HoldForfeited",
    "EVENTS",
    # the decider
    "decide",
    "evolve",
    "is_live",
    "available",
    "is_trusted",
    "standing",
    "lapsed",
    "friend_state",
    "member_state",
    "fine_for",
    "no_friends_cause",
    "MAX_AWAY",
    "MAX_REFUSED",
]
