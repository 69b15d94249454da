"""The master process: the registry of friends and requesters, and the points ledger.

The shell around ``frender.core.master``: every RPC becomes a command whose
``now`` and keys come from here (the key is the one the transport proved, never
one the peer claims), the decision's durable events are committed to
``master.db`` before anyone is answered, then the state evolves.

Commit, then evolve: the master is a ``Node`` (frender/apps/node.py), which
decides on a draft, commits every ready call's events in one transaction,
evolves ``state`` after and stops on a failed append. This module adds the
master's messages and what a heartbeat's answer reads.

Heartbeats are the exception that keeps this cheap: one that changes soft
state only is answered on the spot (``call_at_once``) unless an uncommitted
event changes what its answer depends on: that friend's registration, its
owner's key, or the job it holds (``_touches``). It reads the committed
``state`` (the draft agrees on all of that) and needs no draft.

Held heartbeats. A friend holding no assignment may ask (``Heartbeat.wait``)
for its heartbeat's reply to wait for one, so a new job reaches its friends at
once instead of at their next heartbeat. A grant wakes only the granted
friends' waiting calls; the reply still leaves only after the grant's commit.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import trio

from frender.apps import messages as msg
from frender.apps import words
from frender.apps.node import Node
from frender.apps.standing import Tally, standing_of
from frender.core import master as core
from frender.core._decider import Rejected, is_durable
from frender.store import SqliteLog
from frender.transports import (
    Address,
    Assignment,
    Handler,
    Identity,
    Limits,
    Peer,
    Refused,
    serve,
    sign_assignment,
)

__all__ = ["MasterNode", "run_master"]

_NOTHING_HELD = msg.HeartbeatReply()  # frozen: one instance serves every idle friend


class MasterNode(Node[core.Master], Handler):
    """The master's state, its log and its answers to peers: a ``Node`` over ``frender.core.master``."""

    def __init__(
        self,
        identity: Identity,
        log: SqliteLog,
        settings: core.MasterSettings,
        *,
        operators: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.clock = clock
        # The master's own key is always an operator: `frender operator` run with its home.
        self.operators = operators | {identity.fingerprint}
        # The reply to a heartbeat while the friend holds (friend, job), signed once.
        self._held: dict[tuple[str, int], msg.HeartbeatReply] = {}
        self._waiting: dict[str, trio.Event] = {}  # idle friends whose heartbeat waits for a grant
        self._unsaved: Counter[tuple[str, str]] = Counter()  # what uncommitted events change (_touches)
        self.tally = Tally()  # per friend: points paid, fines, evictions, as the log has them (``frender friend status``)
        super().__init__(log, core.Master(settings=settings), core.evolve)

    def _fold(self, event: object) -> None:
        self.tally.fold(event)
        super()._fold(event)

    def _committed(self, batch: list[object]) -> None:
        self._unsaved.clear()  # nothing is uncommitted any more

    def apply(self, command: object) -> list[object]:
        """Decide on the draft and commit at once, with anything pending (used before serving, and by tests)."""
        decided = self._apply_later(command)
        if self._pending:
            self.commit_now()
        return decided

    def _apply_later(self, command: object) -> list[object]:
        """Decide on the draft; ``state`` evolves once the durable events are committed (``commit``)."""
        decided = self.decide(lambda draft: core.decide(draft, command))
        for event in decided:
            if is_durable(event):
                self._unsaved.update(_touches(self._draft, event))
        return decided

    async def _commit(self) -> None:
        await self.commit()

    def call_at_once(self, peer: Peer, request: object) -> object | None:
        """A heartbeat that changes soft state only, answered on the spot when no uncommitted event touches it.

        A heartbeat's answer depends only on the friend's record, its owner's
        key and the job it holds; when no uncommitted event changes those
        (``_touches``), everything the answer could reflect is committed, so it
        may leave now. A heartbeat that also releases a job (a durable event),
        or that waits for a grant, is left to ``call``: deciding is pure, so it
        decides again there. Nothing it reads is uncommitted, so it decides and
        answers on the committed ``state``.
        """
        if type(request) is not msg.Heartbeat or self.broken is not None:
            return None
        msg.check_bounds(request)
        if self._unsaved:
            rec = self.state.friends.get(request.friend)
            if ("friend", request.friend) in self._unsaved or (rec is not None and ("user", rec.user) in self._unsaved):
                return None
        now = self.clock()
        heartbeat = core.Heartbeat(
            friend=request.friend, key=peer.fingerprint, busy=request.busy, last_done=request.last_done,
            away=request.away, refuse=request.refuse, now=now,
        )
        try:
            decided = core.decide(self.state, heartbeat)
        except Rejected as rejection:
            raise Refused(rejection.code, rejection.reason) from None
        if any(is_durable(event) for event in decided):
            return None
        reply = self._assignment_of(self.state, request.friend, now)
        if reply is _NOTHING_HELD and request.wait > 0:
            return None  # an idle friend's heartbeat waits for a grant: ``call`` holds it
        self.took(decided)
        return reply

    async def call(self, peer: Peer, request: object) -> object:
        msg.check_bounds(request)
        try:
            reply = self._answer(peer, request, self.clock())
        finally:
            # Answers and refusals alike leave only once what they saw is committed.
            with trio.CancelScope(shield=True):
                await self._commit()
        if reply is _NOTHING_HELD and isinstance(request, msg.Heartbeat) and request.wait > 0:
            reply = await self._assignment_within(request.friend, request.wait)
        return reply

    async def _assignment_within(self, friend: str, wait: float) -> msg.HeartbeatReply:
        """The friend's assignment as soon as it is granted one and that is committed, or nothing after ``wait``."""
        # Never longer than the friend counts as live: it heartbeats again when this returns.
        with trio.move_on_after(min(wait, self.state.settings.friend_timeout / 2)):
            while True:
                granted = self._waiting.setdefault(friend, trio.Event())
                try:
                    await granted.wait()
                finally:
                    if self._waiting.get(friend) is granted:
                        del self._waiting[friend]
                reply = self._assignment_of(self._draft, friend, self.clock())  # the grant may await its commit, below
                if reply is not _NOTHING_HELD:
                    with trio.CancelScope(shield=True):
                        await self._commit()
                    return reply
        return _NOTHING_HELD

    def _answer(self, peer: Peer, request: object, now: float) -> object:
        match request:
            case msg.Heartbeat(friend=friend, busy=busy, last_done=last_done, away=away, refuse=refuse):
                self._apply_later(
                    core.Heartbeat(friend=friend, key=peer.fingerprint, busy=busy, last_done=last_done, away=away, refuse=refuse, now=now)
                )
                return self._assignment_of(self._draft, friend, now)
            case msg.RegisterFriend(user=user, name=name, profile=profile, capacity=capacity, away=away, refuse=refuse):
                friend = f"{user}/{name}"
                self._apply_later(
                    core.RegisterFriend(
                        user=user, key=peer.fingerprint, friend=friend, profile=profile, capacity=capacity, away=away, refuse=refuse, now=now
                    )
                )
                return msg.Registered(friend=friend, heartbeat_every=self._draft.settings.friend_timeout / 4)
            case msg.CreateAccount(user=user):
                self._apply_later(core.CreateAccount(user=user, key=peer.fingerprint))
                return msg.AccountCreated(user=user, key=peer.fingerprint, balance=self._draft.accounts[user].balance)
            case msg.AccountOf(key=key):
                if peer.fingerprint not in self._draft.requesters and key != peer.fingerprint:
                    raise Refused("untrusted", "only a trusted requester asks whose a key is (anyone may ask of its own)")
                user = self._draft.owners.get(key, "")
                return msg.AccountInfo(user=user, balance=self._draft.accounts[user].balance if user else 0)
            case msg.AskFriends():
                return self._ask_friends(peer, request, now)
            case msg.Report():
                self._apply_later(
                    core.ReportJob(
                        requester=peer.fingerprint,
                        job=request.job,
                        payouts=request.payouts,
                        check_outcomes=request.check_outcomes,
                        own_outcomes=request.own_outcomes,
                        evicted=request.evicted,
                        evidence=request.evidence,
                        head_seq=request.head_seq,
                        head_hash=request.head_hash,
                        close=request.close,
                        now=now,
                        outcome=request.outcome,
                    )
                )
                return msg.Ok()
            case msg.ReleaseOpening():
                return self._release_opening(peer, request, now)
            case msg.KnownProfiles():
                live = {f.profile for f in self._draft.friends.values() if core.is_live(self._draft, f.friend, now)}
                return msg.Profiles(live=tuple(sorted(live, key=str)))
            case msg.Grant(user=user, amount=amount, reason=reason, key=key):
                self._operator(peer)
                self._apply_later(core.GrantPoints(user=user, key=key, amount=amount, reason=reason))
                return msg.Ok()
            case msg.Trust(key=key, name=name):
                self._operator(peer)
                self._apply_later(core.TrustRequester(key=key, name=name))
                return msg.Ok()
            case msg.Status(page=page):
                return self._status(self._draft, peer, page, now)
            case msg.FriendStanding(friend=friend):  # read-only: the committed records and the tally folded from them
                return standing_of(self.state, self.tally, friend, key=peer.fingerprint, operator=peer.fingerprint in self.operators, now=now)
        raise Refused("unsupported", f"the master does not answer {type(request).__name__}")

    def _operator(self, peer: Peer) -> None:
        if peer.fingerprint not in self.operators:
            raise Refused("not-operator", "only the master's operator may do this")

    def _ask_friends(self, peer: Peer, ask: msg.AskFriends, now: float) -> msg.FriendsGranted:
        request = core.RequestFriends(
            requester=peer.fingerprint,
            job=ask.job,
            submitter=ask.submitter,
            submitter_key=ask.submitter_key,
            frames=ask.frames,
            want=ask.want,
            profile=ask.profile,
            checks_per_friend=ask.checks_per_friend,
            exclude=ask.exclude,
            blend_sha256=ask.blend_sha256,
            address=ask.address,
            priority=ask.priority,
            opening=ask.opening,
            now=now,
        )
        try:
            decided = self._apply_later(request)
        except Refused as exc:  # its cause in a word after the code, for the requester to say why the job waits
            if exc.code != "no-friends":
                raise
            raise Refused(f"no-friends:{core.no_friends_cause(self._draft, request)}", exc.reason) from None
        grant = next(e for e in decided if isinstance(e, core.FriendsAssigned))
        for friend in grant.friends:
            if (waiting := self._waiting.pop(friend, None)) is not None:
                waiting.set()
        draft = self._draft
        friends = tuple(
            msg.GrantedFriendInfo(
                friend=f, user=draft.friends[f].user, key=draft.accounts[draft.friends[f].user].key or "",
                reputation=core.standing(draft, draft.friends[f]), clean_run=draft.friends[f].clean_run,
            )
            for f in grant.friends
        )
        return msg.FriendsGranted(job=grant.job, friends=friends, shortfall=grant.shortfall)

    def _release_opening(self, peer: Peer, release: msg.ReleaseOpening, now: float) -> msg.OpeningReleased:
        """Close the job opened for the requester's ``opening``, paying nobody and refunding its escrow; idempotent."""
        if not release.opening:
            raise Refused("bad-request", "name the opening to release")
        found = next((j for j in self._draft.jobs.values() if j.opening == release.opening and j.requester == peer.fingerprint), None)
        if found is None:
            return msg.OpeningReleased(job=None)
        if not found.closed:
            self._apply_later(
                core.ReportJob(requester=peer.fingerprint, job=found.job, head_seq=release.head_seq, head_hash=release.head_hash, now=now)
            )
        return msg.OpeningReleased(job=found.job)

    def _assignment_of(self, state: core.Master, friend: str, now: float) -> msg.HeartbeatReply:
        """The friend's signed assignment in ``state`` while it holds a live one (Rule 3 of the core)."""
        rec = state.friends[friend]
        if rec.job is None or now >= rec.held_until:
            return _NOTHING_HELD
        job = state.jobs[rec.job]
        reply = self._held.get((friend, job.job))
        if reply is None:
            signed = sign_assignment(
                self.identity,
                Assignment(
                    job=job.job,
                    friend=friend,
                    friend_key=state.accounts[rec.user].key or "",
                    requester_key=job.requester,
                    blend_sha256=job.blend_sha256,
                    expires=rec.held_until,
                ),
            )
            reply = self._held[(friend, job.job)] = msg.HeartbeatReply(assignment=signed, requester=job.address)
        return reply

    def status(self) -> msg.StatusReply:
        """Friends, jobs and the ledger as committed now, unpaged and as the operator sees them (the dashboard's)."""
        return self._status(self.state, None, None, self.clock())

    def _status(self, state: core.Master, peer: Peer | None, page: int | None, now: float) -> msg.StatusReply:
        """One page of friends, jobs and balances: a user sees its own balance, the operator all, everyone the totals.

        ``peer`` None is the operator's own view; ``page`` None is every entry in one reply (never sent over the wire).
        """
        per_friends, per_jobs, per_balances = msg.STATUS_PAGE
        if peer is None or peer.fingerprint in self.operators:
            visible = sorted(state.accounts.values(), key=lambda a: a.user)
        else:
            mine = state.owners.get(peer.fingerprint)
            visible = [state.accounts[mine]] if mine is not None else []
        if page is None:
            per_friends, per_jobs, per_balances, page = max(1, len(state.friends)), max(1, len(state.jobs)), max(1, len(visible)), 0
        pages = max(
            1,
            -(-len(state.friends) // per_friends),
            -(-len(state.jobs) // per_jobs),
            -(-len(visible) // per_balances),
        )
        friends = tuple(
            msg.FriendStatus(
                friend=f.friend,
                live=core.is_live(state, f.friend, now),
                busy=state.seen.get(f.friend, (0.0, False))[1],
                job=f.job,
                profile=f.profile,
                clean_run=f.clean_run,
                away=f.away,
                reputation=core.standing(state, f),  # below the threshold until trusted (Rule 7)
                trust_threshold=state.settings.trust_threshold,
            )
            for f in islice(state.friends.values(), page * per_friends, (page + 1) * per_friends)
        )
        jobs = tuple(
            msg.JobStatus(
                job=j.job,
                submitter=j.submitter,
                frames=j.frames,
                friends=tuple(j.friends[: msg.JOB_FRIENDS_SHOWN]),
                evicted=tuple(j.evicted[: msg.JOB_FRIENDS_SHOWN]),
                escrow=j.escrow,
                paid=j.paid,
                closed=j.closed,
                friend_count=len(j.friends),
                evicted_count=len(j.evicted),
                state=words.master_job_state(closed=j.closed, outcome=j.outcome, friends=len(j.friends) - len(j.evicted)),
            )
            for j in islice(state.jobs.values(), page * per_jobs, (page + 1) * per_jobs)
        )
        balances = {a.user: a.balance + a.held for a in visible[page * per_balances : (page + 1) * per_balances]}  # held pay included
        return msg.StatusReply(
            friends=friends,
            jobs=jobs,
            balances=balances,
            granted=state.granted,
            total_balance=state.balances() + state.held(),
            escrow=state.escrow(),
            accounts=len(state.accounts),
            page=page,
            pages=pages,
        )


def _touches(state: core.Master, event: object) -> list[tuple[str, str]]:
    """What a durable event changes that a heartbeat's answer reads: friends' records and holds, users' keys."""
    match event:
        case core.FriendRegistered(friend=friend) | core.FriendReleased(friend=friend):
            return [("friend", friend)]
        case core.FriendsAssigned(friends=friends):
            return [("friend", friend) for friend in friends]
        case core.JobClosed(job=job):
            return [("friend", friend) for friend in state.jobs[job].friends]
        case core.UserBound(user=user):
            return [("user", user)]
    return []


async def run_master(
    *,
    host: str,
    port: int,
    db: Path,
    home: Path,
    settings: core.MasterSettings = core.MasterSettings(),
    trust: tuple[tuple[str, str], ...] = (),
    operators: frozenset[str] = frozenset(),
    limits: Limits = Limits(),
    sync: str = "full",
    announce: Callable[[str], None] = print,
    web: tuple[str, int] | None = None,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Replay ``db``, trust the given requester keys, listen, and announce the address (and the dashboard's, with ``web``).

    ``sync`` is the log's (see SqliteLog): "normal" answers durable calls
    sooner but may lose the last ones to a power cut; "full" never does.
    """
    identity = Identity.load_or_create(home)
    log = SqliteLog(db, sync=sync)
    try:
        node = MasterNode(identity, log, settings, operators=operators)
        for key, name in trust:
            node.apply(core.TrustRequester(key=key, name=name))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.stop_on_log_failure)
            bound = await nursery.start(functools.partial(serve, identity, host, port, node, limits=limits))
            address = Address(host=host, port=bound, fingerprint=identity.fingerprint)
            announce(f"master listening at {address}")
            if web is not None:
                from frender.apps.web import serve_master_web

                url = await nursery.start(serve_master_web, node, *web)
                announce(f"master dashboard at {url}/ (open it with the token `frender operator web-token` prints)")
            task_status.started(address)
    finally:
        log.close()
