"""Model-based test of the master: any command sequence keeps the registry and ledger sound.

Invariants run after every step, so each costs what the step changed, not the
whole log; replaying the whole log is checked once per run, in ``teardown``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from frender import codec
from frender.core._decider import Rejected, fold, is_durable
from frender.core.master import (
    CreateAccount,
    FriendFined,
    FriendReleased,
    HoldForfeited,
    FriendsAssigned,
    GrantPoints,
    Heartbeat,
    JobClosed,
    JobOpened,
    Master,
    MasterSettings,
    RegisterFriend,
    ReportJob,
    RequestFriends,
    TrustRequester,
    decide,
    evolve,
    is_live,
    is_trusted,
)
from frender.core.profile import RenderProfile
from frender.store import MemoryLog

PROFILES = [RenderProfile(blender_version="5.0.1", build_hash="a"), RenderProfile(blender_version="3.4.1", build_hash="b")]
USERS = ["ann", "bob", "cat", "dan"]
users = st.sampled_from(USERS)
forged = st.sampled_from([False, False, False, True])  # mostly the user's own key
friends = st.builds(lambda u, i: f"{u}/{i}", users, st.integers(0, 2))


def key_of(user: str, forged: bool) -> str:
    return "k-evil" if forged else "k-" + user.split("/")[0]
requesters = st.sampled_from(["R1", "R1", "R1", "R2", "untrusted"])


@dataclass
class Escrowed:
    """The naive model's record of one job's escrow."""

    submitter: str
    s: int
    funded: int
    paid: int = 0


class MasterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Trust over two jobs of two requesters, lapsing and holding on the clock's scale (ticks of up to 40 s).
        self.state = Master(
            settings=MasterSettings(
                friend_timeout=2.0, starting_grant=3, assignment_ttl=30.0, trust_jobs=2, trust_requesters=2, trust_ttl=100.0, hold_ttl=60.0
            )
        )
        self.log = MemoryLog()
        self.now = 0.0
        self.holder: dict[str, tuple[int, float]] = {}  # model: friend -> (job, expires) while held
        self.trusted: set[str] = set()
        # Naive model of the ledger, from the commands the master accepted: user -> balance, job -> its escrow.
        self.balance: dict[str, int] = {}
        self.escrowed: dict[int, Escrowed] = {}
        self.trust("R1")
        self.fined: dict[str, int] = {}  # model: job -> points fined so far
        self.paid: dict[int, set[str]] = {}  # job -> friends a FriendPaid event paid, as the events were applied
        for user in USERS:
            self.apply(CreateAccount(user=user, key=key_of(user, False)))
            self.apply(GrantPoints(user=user, key=key_of(user, False), amount=30))

    @initialize()
    def a_pool_of_friends(self):
        for friend in ["ann/0", "bob/0", "bob/1", "cat/0", "dan/0"]:
            self.apply(RegisterFriend(user=friend[:3], key=key_of(friend, False), friend=friend, profile=PROFILES[0], now=self.now))

    def apply(self, command) -> list[object]:
        try:
            out = decide(self.state, command)
        except Rejected as rejection:
            note(f"{command!r} -> rejected {rejection.code}")
            return []
        note(f"{command!r} -> {out!r}")
        self.log.append([e for e in out if is_durable(e)])
        for event in out:
            self.check_event(event)
            evolve(self.state, event)
            state = self.state  # Rule 5 after every event, not only every command: fines, holds and refunds each balance
            assert state.balances() + state.held() + state.escrow() == state.granted, f"Rule 5 broken by {event!r}"
        self.model_ledger(command, out)
        return out

    def model_ledger(self, command, out: list[object]) -> None:
        """Move points in the naive model as the paper's ledger says, for a command the master accepted."""
        for user in {getattr(command, "user", None), getattr(command, "submitter", None)} - {None}:
            if user not in self.balance and isinstance(command, (CreateAccount, RegisterFriend, RequestFriends)):
                self.balance[user] = self.state.settings.starting_grant  # bound by its owner
        if isinstance(command, GrantPoints):
            self.balance[command.user] = self.balance.get(command.user, 0) + command.amount
        elif isinstance(command, RequestFriends):
            [assigned] = [e for e in out if isinstance(e, FriendsAssigned)]
            job = self.escrowed.get(assigned.job)
            if job is None:  # a new job: M points for the frames, then s per friend granted
                job = self.escrowed[assigned.job] = Escrowed(submitter=command.submitter, s=command.checks_per_friend, funded=command.frames)
                self.balance[command.submitter] -= command.frames
            cost = job.s * len(assigned.friends)
            job.funded += cost
            self.balance[command.submitter] -= cost
        elif isinstance(command, ReportJob):
            job = self.escrowed[command.job]
            for friend, points in command.payouts.items():
                if points:
                    user = friend.split("/")[0]  # friends are registered as "user/n"
                    self.balance[user] = self.balance.get(user, 0) + points
                    job.paid += points
            for fine in (e for e in out if isinstance(e, FriendFined)):  # an evicted friend's owner pays the submitter
                self.balance[fine.user] -= fine.points
                self.balance[fine.to] += fine.points
            for hold in (e for e in out if isinstance(e, HoldForfeited)):  # and its holds go back to the jobs' submitters
                self.balance[hold.user] -= hold.points
                self.balance[hold.to] += hold.points
            if command.close:
                self.balance[job.submitter] += job.funded - job.paid

    def check_event(self, event) -> None:
        if type(event).__name__ == "FriendPaid":
            self.paid.setdefault(event.job, set()).add(event.friend)
        if isinstance(event, FriendReleased):
            self.holder.pop(event.friend, None)
        if isinstance(event, JobClosed):
            self.holder = {f: h for f, h in self.holder.items() if h[0] != event.job}
        if isinstance(event, FriendsAssigned):
            job = self.state.jobs.get(event.job)
            submitter = job.submitter if job else self.pending_submitter
            requester = job.requester if job else self.pending_requester
            assert requester in self.trusted, "an untrusted requester got friends"
            for friend in event.friends:
                held = self.holder.get(friend)
                assert held is None or self.now >= held[1], f"{friend} would hold two jobs"
                assert self.state.friends[friend].user != submitter, "a submitter got its own friend"
                self.holder[friend] = (event.job, event.expires)
        if isinstance(event, JobOpened):
            self.pending_submitter, self.pending_requester = event.submitter, event.requester
        if isinstance(event, FriendFined):
            payer = self.state.accounts[event.user].balance
            assert 0 <= event.points <= min(event.forfeited, payer), "a fine beyond the forfeit or the owner's balance"
            self.fined[event.job] = self.fined.get(event.job, 0) + event.points
        if isinstance(event, FriendsAssigned):
            self.check_minority(event)

    def check_minority(self, event: FriendsAssigned) -> None:
        """Rule 8, from the model's side: with a trusted friend live, probationary friends stay a minority of the job."""
        job = self.state.jobs.get(event.job)
        held = [f for f in (job.friends if job else []) if f not in (job.evicted if job else [])] + list(event.friends)
        profile = self.state.friends[event.friends[0]].profile if event.friends else None
        trusted_live = any(
            is_trusted(self.state, r) and r.profile == profile and is_live(self.state, r.friend, self.now) for r in self.state.friends.values()
        )
        good = sum(1 for f in held if is_trusted(self.state, self.state.friends[f]))
        probation = len(held) - good
        if trusted_live or good:
            fresh_probation = sum(1 for f in event.friends if not is_trusted(self.state, self.state.friends[f]))
            assert fresh_probation == 0 or probation < good, f"probationary majority {held}"

    @rule(dt=st.sampled_from([0.5, 0.5, 1.0, 2.5, 40.0]))
    def tick(self, dt):
        self.now += dt

    @rule(user=st.sampled_from(USERS + ["eve"]), forged=forged)
    def create_account(self, user, forged):
        self.apply(CreateAccount(user=user, key=key_of(user, forged)))

    @rule(user=users, forged=forged, index=st.integers(0, 2), profile=st.sampled_from(PROFILES[:1] * 3 + PROFILES))
    def register(self, user, forged, index, profile):
        self.apply(RegisterFriend(user=user, key=key_of(user, forged), friend=f"{user}/{index}", profile=profile, now=self.now))

    @rule(data=st.data(), forged=forged, busy=st.booleans(), done=st.none() | st.integers(1, 6))
    def heartbeat(self, data, forged, busy, done):
        friend = data.draw(st.sampled_from(sorted(self.state.friends)) if self.state.friends else friends)
        self.apply(Heartbeat(friend=friend, key=key_of(friend, forged), busy=busy, last_done=done, now=self.now))

    @rule(done=st.booleans())
    def everyone_heartbeats(self, done):
        for friend, rec in sorted(self.state.friends.items()):
            self.apply(Heartbeat(friend=friend, key=key_of(friend, False), last_done=rec.job if done else None, now=self.now))

    @rule(requester=st.sampled_from(["R1", "R2"]))
    def trust(self, requester):
        self.trusted.add(requester)
        self.apply(TrustRequester(key=requester, name=requester.lower()))

    @rule(user=users, forged=forged, amount=st.integers(-1, 40))
    def grant(self, user, forged, amount):
        if self.apply(GrantPoints(user=user, key=key_of(user, forged), amount=amount)):
            assert self.state.accounts[user].key == key_of(user, forged)  # points go only to the key the grant names

    @rule(
        requester=requesters,
        job=st.none() | st.none() | st.integers(1, 6),
        submitter=users,
        forged=forged,
        frames=st.integers(0, 8),
        want=st.integers(0, 4),
        s=st.integers(0, 3),
        profile=st.sampled_from(PROFILES[:1] * 3 + PROFILES),
        priority=st.sampled_from((0, 0, 1, -1)),
    )
    def request(self, requester, job, submitter, forged, frames, want, s, profile, priority):
        self.apply(
            RequestFriends(
                requester=requester, job=job, submitter=submitter, submitter_key=key_of(submitter, forged), frames=frames,
                want=want, profile=profile, checks_per_friend=s, priority=priority, now=self.now,
            )
        )

    @rule(data=st.data(), requester=requesters, close=st.booleans())
    def report(self, data, requester, close):
        job = data.draw(st.sampled_from(sorted(self.state.jobs)) if self.state.jobs else st.integers(1, 3))
        assigned = self.state.jobs[job].friends if job in self.state.jobs else []
        stranger = data.draw(st.sampled_from([False, False, False, True]))
        pool = st.sampled_from(assigned + ["ann/9"] if stranger or not assigned else assigned)
        payouts = data.draw(st.dictionaries(pool, st.integers(0, 25), max_size=3))
        evicted = tuple(data.draw(st.lists(pool, max_size=2, unique=True)))
        if not stranger:  # mostly a well-formed report: evicted friends unpaid
            payouts = {f: p for f, p in payouts.items() if f not in evicted}
        outcomes = data.draw(st.dictionaries(pool, st.lists(st.booleans(), max_size=3).map(tuple), max_size=2))
        own = data.draw(st.dictionaries(pool, st.lists(st.booleans(), min_size=1, max_size=4).map(tuple), max_size=3))
        if not close:
            payouts = {}
        before = {f: r.reputation for f, r in self.state.friends.items()}
        was_evicted = set(self.state.jobs[job].evicted) if job in self.state.jobs else set()
        out = self.apply(
            ReportJob(
                requester=requester, job=job, payouts=payouts, evicted=evicted, check_outcomes=outcomes, own_outcomes=own,
                evidence={f: "frame 1: black" for f in evicted}, close=close, now=self.now,
            )
        )
        if out:  # Rule 7: reputation moves by the requester's own outcomes only (two a report at most); an eviction resets it
            caught = {self.state.friends[f].user for f in evicted if f not in was_evicted}  # and its owner's every friend
            for friend, rec in self.state.friends.items():
                expected = base = before[friend]
                for passed in own.get(friend, ()):
                    expected, base = (expected + 1, base) if passed else (0, 0)
                expected = min(expected, base + self.state.settings.trust_per_job)
                if friend in evicted or (friend in own and friend in self.state.jobs[job].evicted) or rec.user in caught:
                    expected = 0
                assert rec.reputation == expected, f"{friend}: reputation {rec.reputation}, model {expected}"

    @invariant()
    def ledger_balances(self):
        state = self.state
        assert state.balances() + state.held() + state.escrow() == state.granted  # Rule 5, held pay counted
        assert all(0 <= j.paid <= j.paid + j.refunded <= j.escrow for j in state.jobs.values())
        assert all(a.balance >= 0 and all(h.points > 0 for h in a.holds) for a in state.accounts.values())

    @invariant()
    def balances_follow_the_naive_ledger(self):
        """Each user's points (spendable and held) are exactly its grants, minus the escrows it funded, plus payouts and
        refunds, moved by fines and forfeited holds."""
        assert {user: account.balance + account.held for user, account in self.state.accounts.items()} == self.balance

    @invariant()
    def evicted_friends_are_unpaid(self):
        """No friend evicted from a job was paid for it (the payments as the events were applied)."""
        for job in self.state.jobs.values():
            assert not set(job.evicted) & self.paid.get(job.job, set())

    @invariant()
    def waiting_jobs_are_the_open_short_ones(self):
        """Rule 10's index holds exactly the open jobs whose last grant fell short (after replay too: teardown)."""
        expected = {j.job for j in self.state.jobs.values() if j.waiting and not j.closed}
        assert set(self.state.waiting) == expected

    def teardown(self):
        """Replaying the log, through the codec's JSON, gives the durable state, its waiting jobs and its payments."""
        if not hasattr(self, "log"):
            return
        replayed = fold(evolve, Master(settings=self.state.settings), (codec.from_json(r.tag, r.body) for r in self.log.records()))
        assert replayed == self.state  # `seen` (liveness) is excluded from equality
        assert set(replayed.waiting) == {j.job for j in self.state.jobs.values() if j.waiting and not j.closed}
        paid: dict[int, set[str]] = {}
        for r in self.log.records():
            event = codec.from_json(r.tag, r.body)
            if type(event).__name__ == "FriendPaid":
                paid.setdefault(event.job, set()).add(event.friend)
        assert paid == self.paid, "the logged payments are not the ones applied"


TestMaster = MasterMachine.TestCase
TestMaster.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
