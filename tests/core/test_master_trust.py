"""Trust is costly and fragile, and cheating never pays (Rules 7, 9, 12): the master's side, driven through its decider."""

from __future__ import annotations

from pathlib import Path

from frender import codec
from frender.core.master import (
    CreateAccount,
    FriendFined,
    FriendPaid,
    FriendsAssigned,
    GrantPoints,
    Heartbeat,
    HoldForfeited,
    HoldReleased,
    Master,
    MasterSettings,
    RegisterFriend,
    ReportJob,
    ReputationChanged,
    RequestFriends,
    TrustRequester,
    decide,
    evolve,
    is_trusted,
    standing,
)
from frender.core.profile import RenderProfile

P5 = RenderProfile(blender_version="5.0.1", build_hash="a3db93c5b259")
DAY = 86400.0
OLD_LOG = Path(__file__).parent / "data" / "master_log_v1.tsv"  # written by the build before Rules 7's jobs and 12 (tag TAB body)


def apply(state: Master, command) -> list[object]:
    events = decide(state, command)
    for event in events:
        evolve(state, event)
    return events


def farm(friends=("eve/a", "eve/b", "ann/pc", "bob/pc", "cat/pc"), **settings) -> Master:
    """Two trusted requesters, an artist with points, and live friends (eve owns two)."""
    state = Master(settings=MasterSettings(friend_timeout=1e9, **settings))
    for key in ("R1", "R2"):
        apply(state, TrustRequester(key=key, name=key.lower()))
    for user in ("artist", *sorted({f.split("/")[0] for f in friends})):
        apply(state, CreateAccount(user=user, key="k-" + user))
    apply(state, GrantPoints(user="artist", key="k-artist", amount=10_000))
    for friend in friends:
        user = friend.split("/")[0]
        apply(state, RegisterFriend(user=user, key="k-" + user, friend=friend, profile=P5, now=0.0))
    return state


def run_job(state: Master, friends: tuple[str, ...], *, requester="R1", now=1.0, passes=2, pay=4, close=True, evicted=()) -> int:
    """A job granted to exactly ``friends`` (the others are made busy), its own checks all passed, each paid ``pay``."""
    for friend in state.friends:
        user = state.friends[friend].user
        apply(state, Heartbeat(friend=friend, key="k-" + user, busy=friend not in friends, last_done=state.friends[friend].job, now=now))
    events = apply(state, RequestFriends(requester=requester, submitter="artist", submitter_key="k-artist", frames=8, want=len(friends),
                                         profile=P5, now=now))
    job = next(e for e in events if isinstance(e, FriendsAssigned))
    assert set(job.friends) == set(friends), job
    own = {f: (True,) * passes for f in friends if f not in evicted}
    apply(state, ReportJob(requester=requester, job=job.job, own_outcomes=own, evicted=tuple(evicted),
                           payouts={f: pay for f in friends if f not in evicted} if close else {}, close=close, now=now))
    return job.job


def test_one_job_or_one_requester_never_makes_a_friend_trusted():
    """Three own checks in one job made a friend trusted; now it takes three jobs of two requesters, two a report at most."""
    state = farm()
    run_job(state, ("eve/a",), passes=6)
    rec = state.friends["eve/a"]
    assert rec.reputation == 2 and not is_trusted(state, rec)  # six passes in one report raise it by two
    run_job(state, ("eve/a",), now=2.0)
    run_job(state, ("eve/a",), now=3.0)
    assert rec.reputation == 6 and rec.trust_jobs == 3 and not is_trusted(state, rec)  # all from one requester
    assert standing(state, rec) == 2  # what a requester is told: probationary
    run_job(state, ("eve/a",), requester="R2", now=4.0)
    assert is_trusted(state, rec) and standing(state, rec) == 8


def test_trust_lapses_when_no_own_check_passed_it_for_trust_ttl():
    """A trusted friend whose last pass is older than trust_ttl is not granted as trusted: it drops below the threshold."""
    state = farm(friends=("eve/a", "ann/pc"), trust_jobs=1, trust_requesters=1, trust_ttl=10 * DAY)
    run_job(state, ("eve/a",), passes=2, now=1.0)
    run_job(state, ("eve/a",), passes=2, now=2.0)
    assert is_trusted(state, state.friends["eve/a"])
    # Its last heartbeat came before the lapse (a live friend's heartbeat would log it: next test); the grant finds it.
    apply(state, Heartbeat(friend="eve/a", key="k-eve", last_done=state.friends["eve/a"].job, now=9 * DAY))
    apply(state, Heartbeat(friend="ann/pc", key="k-ann", busy=True, now=9 * DAY))
    events = apply(state, RequestFriends(requester="R1", submitter="artist", submitter_key="k-artist", frames=8, want=1, profile=P5, now=11 * DAY))
    lapse = [e for e in events if isinstance(e, ReputationChanged)]
    assert [(e.friend, e.reputation) for e in lapse] == [("eve/a", 2)]
    assert not is_trusted(state, state.friends["eve/a"])
    assert next(e for e in events if isinstance(e, FriendsAssigned)).friends == ()  # not granted as trusted: the job waits
    # Asked again, it comes as what it now is: a probationary friend (no trusted one is live), told reputation 2.
    events = apply(state, RequestFriends(requester="R1", submitter="artist", submitter_key="k-artist", frames=8, want=1, profile=P5, now=11 * DAY))
    assert next(e for e in events if isinstance(e, FriendsAssigned)).friends == ("eve/a",)
    assert standing(state, state.friends["eve/a"]) == 2


def test_an_interim_eviction_takes_trust_from_the_owners_every_friend_at_once():
    """A friend caught mid-job (a report that does not close) drops to 0 with its owner's other friends; no grant trusts them."""
    state = farm(trust_jobs=1, trust_requesters=1)
    run_job(state, ("eve/a", "eve/b", "ann/pc"), passes=2, pay=3, now=1.0)
    run_job(state, ("eve/a", "eve/b", "ann/pc"), passes=2, pay=3, now=2.0)
    assert all(is_trusted(state, state.friends[f]) for f in ("eve/a", "eve/b", "ann/pc"))
    job = run_job(state, ("eve/a", "eve/b", "ann/pc"), passes=0, now=3.0, close=False)
    events = apply(state, ReportJob(requester="R1", job=job, evicted=("eve/a",), evidence={"eve/a": "frame 2: black"}, close=False, now=3.5))
    assert {(e.friend, e.reputation) for e in events if isinstance(e, ReputationChanged)} == {("eve/a", 0), ("eve/b", 0)}
    assert [standing(state, state.friends[f]) for f in ("eve/a", "eve/b", "ann/pc")] == [0, 0, 4]
    assert not any(is_trusted(state, state.friends[f]) for f in ("eve/a", "eve/b"))
    # A later grant takes the trusted friend first; eve's friends come only as a probationary minority.
    for friend in ("cat/pc", "bob/pc", "ann/pc"):
        apply(state, Heartbeat(friend=friend, key="k-" + friend.split("/")[0], busy=True, now=4.0))
    apply(state, Heartbeat(friend="eve/b", key="k-eve", now=4.0))
    grant = apply(state, RequestFriends(requester="R2", submitter="artist", submitter_key="k-artist", frames=8, want=2, profile=P5, now=4.0))
    assert next(e for e in grant if isinstance(e, FriendsAssigned)).friends == ()  # eve/b alone may not fill a job beside trusted friends


def test_pay_is_held_until_a_later_jobs_own_checks_confirm_it_or_the_hold_runs_out():
    """Rule 12: a job's pay is held; a later job's own checks passed release it; else it matures after hold_ttl."""
    state = farm(friends=("ann/pc", "bob/pc"), hold_ttl=14 * DAY)
    run_job(state, ("ann/pc", "bob/pc"), pay=4, now=1.0)
    assert [(a.balance, a.held) for a in (state.accounts["ann"], state.accounts["bob"])] == [(0, 4), (0, 4)]
    events = []
    for friend in ("ann/pc", "bob/pc"):  # job 2 checks ann only; bob is busy
        apply(state, Heartbeat(friend=friend, key="k-" + friend[:3], busy=friend == "bob/pc", last_done=1, now=2.0))
    events = apply(state, RequestFriends(requester="R1", submitter="artist", submitter_key="k-artist", frames=8, want=1, profile=P5, now=2.0))
    job = next(e for e in events if isinstance(e, FriendsAssigned)).job
    released = [e for e in apply(state, ReportJob(requester="R1", job=job, own_outcomes={"ann/pc": (True,)}, payouts={"ann/pc": 3}, now=3.0))
                if isinstance(e, HoldReleased)]
    assert [(e.friend, e.job, e.points, e.why) for e in released] == [("ann/pc", 1, 4, "confirmed")]
    assert (state.accounts["ann"].balance, state.accounts["ann"].held) == (4, 3)
    # bob's hold matures: released when its owner next spends (a submit), never before.
    apply(state, CreateAccount(user="bob", key="k-bob"))
    assert state.accounts["bob"].held == 4
    apply(state, GrantPoints(user="bob", key="k-bob", amount=20))
    events = apply(state, RequestFriends(requester="R1", submitter="bob", submitter_key="k-bob", frames=4, want=1, profile=P5, now=15 * DAY))
    assert [(e.friend, e.why) for e in events if isinstance(e, HoldReleased)] == [("bob/pc", "matured")]
    assert state.balances() + state.held() + state.escrow() == state.granted


def test_a_caught_farmer_forfeits_its_holds_and_stake_and_ends_below_where_it_started():
    """Caught after farming trust: holds go back to those who paid them, the fine takes the stake and a job's share."""
    state = farm(friends=("eve/a", "ann/pc"), trust_jobs=1, trust_requesters=1)
    apply(state, GrantPoints(user="eve", key="k-eve", amount=10))  # what eve held before it farmed
    for now in (1.0, 2.0, 3.0):
        run_job(state, ("eve/a", "ann/pc"), pay=4, now=now)
    eve = state.accounts["eve"]
    assert state.friends["eve/a"].earned == 12 and (eve.balance, eve.held) == (18, 4)  # two holds confirmed, the last held
    job = run_job(state, ("eve/a", "ann/pc"), passes=0, now=4.0, close=False)
    events = apply(state, ReportJob(requester="R1", job=job, evicted=("eve/a",), evidence={"eve/a": "frame 5: black"}, close=False, now=4.5))
    [forfeit] = [e for e in events if isinstance(e, HoldForfeited)]
    [fine] = [e for e in events if isinstance(e, FriendFined)]
    assert (forfeit.points, forfeit.job, forfeit.to) == (4, 3, "artist")
    assert (fine.stake, fine.forfeited, fine.points) == (8, 8 + 4 + 1, 13)  # stake 12 - 4 forfeited; a share of 8 frames on 2, 1 check
    assert (eve.balance, eve.held) == (18 - 13, 0) and eve.balance < 10  # below the 10 it had before farming
    assert state.friends["eve/a"].earned == 0
    assert state.balances() + state.held() + state.escrow() == state.granted


def test_a_log_from_before_holds_and_stakes_replays_byte_for_byte_to_the_same_ledger():
    """An older build's log re-encodes to the same bytes and folds to its balances and reputations: nothing held."""
    state = Master()
    for row in OLD_LOG.read_text().splitlines():
        tag, body = row.split("\t", 1)
        event = codec.from_json(tag, body)
        assert codec.tag_of(event) == tag and codec.to_json(event) == body
        evolve(state, event)
    assert {a.user: a.balance for a in state.accounts.values()} == {"artist": 95, "ann": 5, "bob": 5, "cat": 0}
    assert {f.friend: f.reputation for f in state.friends.values()} == {"ann/pc": 3, "bob/pc": 1, "cat/pc": 0}
    assert state.held() == 0 and state.balances() + state.escrow() == state.granted
    # New events leave their new fields out at the defaults, so a body reads as it did.
    assert codec.to_json(FriendPaid(job=1, friend="a/1", user="a", points=2)) == '{"friend":"a/1","job":1,"points":2,"user":"a"}'


def test_a_heartbeat_after_trust_ttl_drops_the_lapsed_trust_once():
    """A trusted friend's first heartbeat past trust_ttl since its last pass logs the lapse; the next logs nothing."""
    state = farm(friends=("eve/a",), trust_jobs=1, trust_requesters=1, trust_ttl=10 * DAY)
    run_job(state, ("eve/a",), passes=2, now=1.0)
    run_job(state, ("eve/a",), passes=2, now=2.0)
    beat = Heartbeat(friend="eve/a", key="k-eve", now=5 * DAY)
    assert not [e for e in apply(state, beat) if isinstance(e, ReputationChanged)]  # within the ttl: nothing
    lapsed_ = [e for e in apply(state, Heartbeat(friend="eve/a", key="k-eve", now=13 * DAY)) if isinstance(e, ReputationChanged)]
    assert [(e.friend, e.reputation) for e in lapsed_] == [("eve/a", 2)] and not is_trusted(state, state.friends["eve/a"])
    assert not [e for e in apply(state, Heartbeat(friend="eve/a", key="k-eve", now=14 * DAY)) if isinstance(e, ReputationChanged)]
