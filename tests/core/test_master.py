"""Table-driven tests of the master's decider: the paper's assignment rule, keys and the ledger."""

from __future__ import annotations

import attrs
import pytest

from frender.core._decider import Rejected
from frender.core.master import (
    CreateAccount,
    EscrowFunded,
    FriendFined,
    FriendReleased,
    FriendsAssigned,
    GrantPoints,
    Heartbeat,
    JobClosed,
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
)
from frender.core.profile import RenderProfile

P5 = RenderProfile(blender_version="5.0.1", build_hash="a3db93c5b259")
P4 = RenderProfile(blender_version="3.4.1", build_hash="debian")


def apply(state: Master, command) -> list[object]:
    events = decide(state, command)
    for event in events:
        evolve(state, event)
    return events


# The trust and pay rules of one job (trusted after 3 own checks, paid at once): these tests are about assignment and
# the paper's ledger; trust over jobs and requesters, its decay, holds and stakes (Rules 7, 9, 12) are in test_master_trust.py.
ONE_JOB_TRUST = dict(trust_jobs=1, trust_requesters=1, trust_per_job=0, trust_ttl=0.0, hold_ttl=0.0)


def master(friends: list[tuple[str, RenderProfile, float]], *, timeout=2.0, points=1000, **settings) -> Master:
    """A master with a trusted requester "R", an artist with points, and friends seen at given times."""
    state = Master(settings=MasterSettings(friend_timeout=timeout, **{**ONE_JOB_TRUST, **settings}))
    apply(state, TrustRequester(key="R", name="requester"))
    apply(state, CreateAccount(user="artist", key="key-artist"))
    apply(state, GrantPoints(user="artist", key="key-artist", amount=points))
    for name, profile, seen in friends:
        user = name.split("/")[0]
        if user not in state.accounts:
            apply(state, CreateAccount(user=user, key="key-" + user))
        apply(state, RegisterFriend(user=user, key="key-" + user, friend=name, profile=profile, now=seen))
    return state


def ask(state, want=2, frames=10, now=10.0, **kw) -> RequestFriends:
    fields = dict(requester="R", submitter="artist", submitter_key="key-artist", frames=frames, want=want, profile=P5, now=now)
    fields.update(kw)
    return RequestFriends(**fields)


def assigned(events) -> tuple[str, ...]:
    return next(e for e in events if isinstance(e, FriendsAssigned)).friends


@pytest.mark.parametrize(
    "seen_at, now, live",
    [
        (8.0, 10.0, True),  # exactly friend_timeout ago: still live
        (7.999, 10.0, False),  # just past the timeout
        (10.0, 10.0, True),
    ],
)
def test_timeout_edge(seen_at, now, live):
    """A friend is live when its last heartbeat is within friend_timeout of now, inclusive."""
    state = master([("a/1", P5, seen_at)])
    assert assigned(apply(state, ask(state, want=1, now=now))) == (("a/1",) if live else ())  # not live: the job waits


def test_busy_and_held_friends_are_skipped():
    """A friend that says busy, or holds a job, is not assigned."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10), ("c/1", P5, 10)])
    apply(state, Heartbeat(friend="a/1", key="key-a", busy=True, now=10))
    first = assigned(apply(state, ask(state, want=1)))
    assert first == ("b/1",)
    second = assigned(apply(state, ask(state, want=5)))
    assert second == ("c/1",)  # b holds job 1, a is busy


def test_profile_mismatch_is_not_assigned():
    """Only friends reporting the job's exact profile take part."""
    state = master([("a/1", P4, 10), ("b/1", P5, 10)])
    assert assigned(apply(state, ask(state, want=2))) == ("b/1",)


LLVMPIPE = dict(gl_backend="OPENGL", gl_renderer="llvmpipe (LLVM 15.0.6, 256 bits)", gl_version="4.5 (Core Profile) Mesa 22.3.6")
NVIDIA = dict(gl_backend="OPENGL", gl_renderer="NVIDIA GeForce RTX 4090/PCIe/SSE2", gl_version="4.6.0 NVIDIA 550.54")


def test_an_eevee_job_pairs_only_friends_of_the_requesters_gl_renderer():
    """EEVEE draws with the GPU: its friends share the requester's GL renderer and driver; Cycles ignores them."""
    soft, gpu = RenderProfile(blender_version="5.0.1", build_hash="a", **LLVMPIPE), RenderProfile(blender_version="5.0.1", build_hash="a", **NVIDIA)
    mesa_next = RenderProfile(blender_version="5.0.1", build_hash="a", **{**LLVMPIPE, "gl_version": "4.5 (Core Profile) Mesa 24.0.1"})
    unknown = RenderProfile(blender_version="5.0.1", build_hash="a")  # a Blender without a GPU backend, or a registration from before GL
    friends = [("a/1", soft, 10), ("b/1", gpu, 10), ("c/1", mesa_next, 10), ("d/1", unknown, 10), ("e/1", soft, 10)]

    def job_of(profile: RenderProfile) -> set[str]:
        state = master(friends)
        return set(assigned(apply(state, ask(state, want=9, profile=profile))))

    assert job_of(soft.for_engine("BLENDER_EEVEE")) == {"a/1", "e/1"}
    assert job_of(gpu.for_engine("BLENDER_WORKBENCH")) == {"b/1"}
    assert job_of(soft.for_engine("CYCLES")) == job_of(unknown.for_engine("CYCLES")) == {"a/1", "b/1", "c/1", "d/1", "e/1"}
    state = master(friends)
    with pytest.raises(Rejected, match="BLENDER_EEVEE") as err:  # a requester that knows no GL renderer pairs nobody for EEVEE
        decide(state, ask(state, want=9, profile=unknown.for_engine("BLENDER_EEVEE")))
    assert err.value.code == "no-friends"


def test_friends_pair_by_agreement_class_not_by_cpu_flags():
    """A Cycles job pairs friends whose calibration agrees with the requester's, whatever SIMD level their CPU
    reports; a friend of another class is left out; profiles without a class pair with each other by CPU class."""
    server = RenderProfile(blender_version="5.0.1", build_hash="a", cpu_class="x86_64-avx512f", agreement="cal-1-denoised")
    laptop = attrs.evolve(server, cpu_class="x86_64-avx2")  # another CPU class, the same renders
    old_cpu = attrs.evolve(server, cpu_class="x86_64-sse4_2", agreement="cal-2-denoised")  # renders differently
    unclassed = attrs.evolve(server, agreement="")  # registered before classes: paired by CPU class
    friends = [("a/1", laptop, 10), ("b/1", old_cpu, 10), ("c/1", unclassed, 10), ("d/1", attrs.evolve(unclassed, cpu_class="x86_64-avx2"), 10)]
    state = master(friends)
    assert set(assigned(apply(state, ask(state, want=9, profile=server.for_engine("CYCLES"))))) == {"a/1"}
    state = master(friends)
    assert set(assigned(apply(state, ask(state, want=9, profile=unclassed.for_engine("CYCLES"))))) == {"c/1"}


def test_profiles_logged_before_engines_and_gl_renderers_decode_as_cycles_profiles():
    """A friend registration from an older log decodes with empty GL fields and still takes Cycles jobs of its build."""
    from frender import codec
    from frender.core.master import FriendRegistered

    old = (
        '{"capacity": 2, "friend": "a/1", "now": 10.0, "user": "a",'
        ' "profile": {"blender_version": "5.0.1", "build_hash": "a", "cpu_class": "generic", "device": "CPU"}}'
    )
    event = codec.from_json(FriendRegistered.tag, old)
    assert event.profile == RenderProfile(blender_version="5.0.1", build_hash="a") and not event.profile.needs_gl
    assert event.profile.renders(RenderProfile(blender_version="5.0.1", build_hash="a", **LLVMPIPE).for_engine("CYCLES"))
    assert not event.profile.renders(RenderProfile(blender_version="5.0.1", build_hash="a", **LLVMPIPE).for_engine("BLENDER_EEVEE"))


def test_fewer_than_n_says_the_shortfall():
    """Asking for more friends than exist grants the live ones and says how many were missing."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10)])
    events = apply(state, ask(state, want=5, frames=10))
    grant = next(e for e in events if isinstance(e, FriendsAssigned))
    assert len(grant.friends) == 2 and grant.shortfall == 3
    assert next(e for e in events if isinstance(e, EscrowFunded)).amount == 10 + 2  # M + s·n


def test_none_available_is_a_clear_refusal():
    """No live friend of the profile: a refusal naming the profile; nothing moves."""
    state = master([("a/1", P4, 10)])
    with pytest.raises(Rejected, match="5.0.1") as err:
        decide(state, ask(state))
    assert err.value.code == "no-friends"
    assert state.accounts["artist"].balance == 1000


def test_least_recently_assigned_first_and_owners_mixed():
    """Fair order: friends never assigned come first; one owner does not fill a job."""
    state = master([("a/1", P5, 10), ("a/2", P5, 10), ("a/3", P5, 10), ("b/1", P5, 10), ("c/1", P5, 10)])
    assert assigned(apply(state, ask(state, want=3))) == ("a/1", "b/1", "c/1")
    # The next job: those three are held; the remaining a-friends come next.
    assert assigned(apply(state, ask(state, want=3))) == ("a/2", "a/3")


def test_released_by_heartbeat_then_never_behind_fresh_friends():
    """A heartbeat reporting the held job done frees the friend; fresh friends never go before it."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10)])
    apply(state, ask(state, want=1))  # job 1 -> a/1
    events = apply(state, Heartbeat(friend="a/1", key="key-a", last_done=1, now=11))
    assert FriendReleased(friend="a/1", job=1, why="done") in events
    assert assigned(apply(state, ask(state, want=2, now=11))) == ("a/1", "b/1")


def test_expired_hold_is_released_when_chosen():
    """After assignment_ttl a held friend may be assigned again, and the log says why."""
    state = master([("a/1", P5, 10)])
    state.settings = MasterSettings(assignment_ttl=5.0)
    apply(state, ask(state, want=1))
    apply(state, Heartbeat(friend="a/1", key="key-a", now=16))
    events = apply(state, ask(state, want=1, now=16))
    assert FriendReleased(friend="a/1", job=1, why="expired") in events


def test_submitter_never_gets_its_own_friends():
    """Friends owned by the job's submitter are never assigned to it."""
    state = master([("artist/laptop", P5, 10), ("b/1", P5, 10)])
    apply(state, RegisterFriend(user="artist", key="key-artist", friend="artist/laptop", profile=P5, now=10))
    assert assigned(apply(state, ask(state, want=2))) == ("b/1",)


def test_untrusted_requester_gets_nothing():
    """Only requesters the operator trusts may ask for friends."""
    state = master([("a/1", P5, 10)])
    with pytest.raises(Rejected) as err:
        decide(state, ask(state, requester="stranger"))
    assert err.value.code == "untrusted"


def test_username_is_bound_to_its_first_key():
    """A second key for a taken username is refused, for friends and submitters alike."""
    state = master([("a/1", P5, 10)])
    with pytest.raises(Rejected) as err:
        decide(state, RegisterFriend(user="a", key="other", friend="a/2", profile=P5, now=10))
    assert err.value.code == "name-taken"
    with pytest.raises(Rejected) as err:
        decide(state, ask(state, submitter="a", submitter_key="stolen"))
    assert err.value.code == "name-taken"
    with pytest.raises(Rejected) as err:
        decide(state, Heartbeat(friend="a/1", key="other", now=10))
    assert err.value.code == "wrong-key"


def test_papers_cost_and_refund():
    """M frames on N friends with s=1 escrows N+M; unpaid escrow returns at close."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10), ("c/1", P5, 10)], points=100)
    apply(state, ask(state, want=3, frames=20))
    assert state.accounts["artist"].balance == 100 - 23
    events = apply(state, ReportJob(requester="R", job=1, payouts={"a/1": 8, "b/1": 7, "c/1": 7}, now=20))
    assert JobClosed(job=1, refund=1, head_seq=0, head_hash="", now=20) in events
    assert state.accounts["artist"].balance == 78 and state.accounts["a"].balance == 8
    assert state.friends["a/1"].job is None


def test_short_balance_is_refused_or_grants_fewer():
    """The first grant needs M + s; with less the request is refused, with a little more fewer friends come."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10), ("c/1", P5, 10)], points=11)
    with pytest.raises(Rejected) as err:
        decide(state, ask(state, frames=11, want=2))
    assert err.value.code == "short-balance"
    assert len(assigned(apply(state, ask(state, frames=9, want=3)))) == 2


def test_report_rules():
    """Reports pay only assigned friends, never evicted ones, never beyond the escrow, only for own jobs."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10)])
    apply(state, ask(state, want=2, frames=4))  # escrow 6
    for bad, code in [
        (dict(payouts={"x/1": 1}), "not-assigned"),
        (dict(payouts={"a/1": 7}), "over-escrow"),
        (dict(payouts={"a/1": 1}, evicted=("a/1",)), "evicted-paid"),
        (dict(requester="R2", payouts={}), "unknown-job"),
    ]:
        fields = dict(requester="R", job=1, now=20)
        fields.update(bad)
        with pytest.raises(Rejected) as err:
            decide(state, ReportJob(**fields))
        assert err.value.code == code
    apply(state, ReportJob(requester="R", job=1, payouts={"b/1": 5}, evicted=("a/1",), check_outcomes={"a/1": (False,), "b/1": (True, True)}, now=20))
    assert state.accounts["b"].balance == 5 and state.accounts.get("a").balance == 0
    assert state.friends["b/1"].clean_run == 2 and state.friends["a/1"].clean_run == 0
    with pytest.raises(Rejected) as err:
        decide(state, ReportJob(requester="R", job=1, now=21))
    assert err.value.code == "closed"


def test_more_friends_for_the_same_job():
    """A requester may ask for more friends for its job; only s per new friend is escrowed."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10)])
    apply(state, ask(state, want=1, frames=10))
    events = apply(state, ask(state, want=1, job=1, frames=10))
    assert assigned(events) == ("b/1",)
    assert next(e for e in events if isinstance(e, EscrowFunded)).amount == 1
    assert state.jobs[1].friends == ["a/1", "b/1"]


def test_points_are_paid_only_by_the_closing_report():
    """An interim report may evict but not pay: a friend's points wait until the job closes clean for it."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10)])
    apply(state, ask(state, want=2, frames=4))
    with pytest.raises(Rejected) as err:
        decide(state, ReportJob(requester="R", job=1, payouts={"a/1": 2}, close=False, now=20))
    assert err.value.code == "not-closed"
    apply(state, ReportJob(requester="R", job=1, evicted=("b/1",), close=False, now=20))
    with pytest.raises(Rejected) as err:
        decide(state, ReportJob(requester="R", job=1, payouts={"b/1": 1}, now=21))
    assert err.value.code == "evicted-paid"


def test_an_eviction_told_while_the_job_runs_takes_trust_and_fines_at_once():
    """An interim report that evicts a trusted friend drops its reputation to 0 and fines its owner then, not at the
    job's end: the next job is granted it as probationary; the closing report naming it again changes nothing."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10)])
    for friend in ("a/1", "b/1"):
        evolve(state, ReputationChanged(friend=friend, job=0, reputation=9, passed=9, failed=0))
    apply(state, GrantPoints(user="b", amount=20, key="key-b"))  # b's owner has a stake to lose
    apply(state, ask(state, want=2, frames=4))
    events = apply(state, ReportJob(requester="R", job=1, evicted=("b/1",), evidence={"b/1": "black frame"}, close=False, now=20))
    assert state.friends["b/1"].reputation == 0 and not is_trusted(state, state.friends["b/1"])
    [fine] = [e for e in events if isinstance(e, FriendFined)]
    assert fine.user == "b" and fine.points > 0 and state.accounts["b"].balance == 20 - fine.points
    closing = apply(state, ReportJob(requester="R", job=1, evicted=("b/1",), payouts={"a/1": 2}, now=21))
    assert not any(isinstance(e, FriendFined) for e in closing)  # fined once, when it was told


@pytest.mark.parametrize(
    ("beat", "chosen"),
    [
        ({}, ("a/1",)),
        ({"away": "paused"}, ("b/1",)),
        ({"away": "outside schedule"}, ("b/1",)),
        ({"refuse": ("artist",)}, ("b/1",)),
        ({"refuse": ("ARTIST",)}, ("b/1",)),  # names are one name without case
        ({"refuse": ("someone-else",)}, ("a/1",)),
    ],
)
def test_away_and_refusing_friends_are_skipped(beat, chosen):
    """A friend whose heartbeat says it is away, or that it refuses the submitter, is never assigned that job."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10)])
    apply(state, Heartbeat(friend="a/1", key="key-a", now=10, **beat))
    assert assigned(apply(state, ask(state, want=1))) == chosen


def test_a_friend_is_assigned_again_once_it_resumes():
    """Away is soft state from the latest heartbeat: a paused friend that resumes is available again."""
    state = master([("a/1", P5, 10)])
    apply(state, Heartbeat(friend="a/1", key="key-a", away="paused", now=10))
    waiting = next(e for e in apply(state, ask(state, want=1)) if isinstance(e, FriendsAssigned))
    assert waiting.friends == () and waiting.shortfall == 1  # it opens and waits for the paused friend
    apply(state, Heartbeat(friend="a/1", key="key-a", now=10))
    assert assigned(apply(state, ask(state, want=1, job=waiting.job))) == ("a/1",)


def test_refusals_declared_at_registration_hold_before_any_heartbeat():
    """A friend registering with refusals or away is never assigned in between, before its first heartbeat."""
    state = master([])
    apply(state, CreateAccount(user="a", key="key-a"))
    apply(state, CreateAccount(user="b", key="key-b"))
    apply(state, RegisterFriend(user="a", key="key-a", friend="a/1", profile=P5, refuse=("artist",), now=10))
    apply(state, RegisterFriend(user="b", key="key-b", friend="b/1", profile=P5, away="outside schedule", now=10))
    assert assigned(apply(state, ask(state, want=2))) == ()  # the job waits for b's schedule


@pytest.mark.parametrize(
    "beat",
    [{"away": "x" * 65}, {"away": "paused\n"}, {"refuse": ("",)}, {"refuse": ("u" * 65,)}, {"refuse": tuple(f"u{i}" for i in range(65))}],
)
def test_oversized_availability_is_refused(beat):
    """A heartbeat with an overlong reason or refusal list is a clear bad-heartbeat refusal, and changes nothing."""
    state = master([("a/1", P5, 10)])
    with pytest.raises(Rejected) as err:
        decide(state, Heartbeat(friend="a/1", key="key-a", now=11, **beat))
    assert err.value.code == "bad-heartbeat"


# ------------------------------------------------ accounts, reputation, stakes


def trust(state: Master, friends: tuple[str, ...]) -> None:
    """Bring ``friends`` to the trust threshold: one job on them all, the requester's own checks all passed."""
    for friend in friends:
        apply(state, Heartbeat(friend=friend, key="key-" + state.friends[friend].user, now=10))
    number = next(e for e in apply(state, ask(state, want=len(friends), frames=4)) if isinstance(e, FriendsAssigned)).job
    passed = (True,) * state.settings.trust_threshold
    apply(state, ReportJob(requester="R", job=number, own_outcomes={f: passed for f in friends}, now=10))


def test_accounts_are_bound_only_by_their_owner():
    """A friend cannot bind a name, the operator grants only to bound names, and a key holds one name."""
    state = master([])
    with pytest.raises(Rejected) as err:
        decide(state, RegisterFriend(user="alice", key="key-mallory", friend="alice/pc", profile=P5, now=1))
    assert err.value.code == "unknown-user"
    with pytest.raises(Rejected) as err:
        decide(state, GrantPoints(user="alice", key="key-alice", amount=500))
    assert err.value.code == "unknown-user"
    apply(state, CreateAccount(user="alice", key="key-alice"))
    assert apply(state, CreateAccount(user="alice", key="key-alice")) == []  # idempotent for the owner
    with pytest.raises(Rejected) as err:
        decide(state, CreateAccount(user="alice", key="key-mallory"))
    assert err.value.code == "name-taken"
    with pytest.raises(Rejected) as err:
        decide(state, CreateAccount(user="alice2", key="key-alice"))
    assert err.value.code == "key-taken"
    with pytest.raises(Rejected) as err:
        decide(state, RegisterFriend(user="alice", key="key-mallory", friend="alice/pc", profile=P5, now=1))
    assert err.value.code == "name-taken"
    apply(state, GrantPoints(user="alice", key="key-alice", amount=500))
    apply(state, RegisterFriend(user="alice", key="key-alice", friend="alice/pc", profile=P5, now=1))
    assert state.accounts["alice"].balance == 500


def test_fresh_names_cannot_take_a_job_while_trusted_friends_are_live():
    """Four fresh Sybils never fill a job: trusted friends come first and probationary ones stay a minority."""
    state = master([("t1/pc", P5, 10), ("t2/pc", P5, 10), ("t3/pc", P5, 10)])
    trust(state, ("t1/pc", "t2/pc", "t3/pc"))
    for i in range(4):
        apply(state, CreateAccount(user=f"sybil{i}", key=f"key-sybil{i}"))
        apply(state, RegisterFriend(user=f"sybil{i}", key=f"key-sybil{i}", friend=f"sybil{i}/pc", profile=P5, now=10))
    chosen = assigned(apply(state, ask(state, want=4)))
    assert set(chosen[:3]) == {"t1/pc", "t2/pc", "t3/pc"}
    sybils = [f for f in chosen if f.startswith("sybil")]
    assert len(sybils) < len(chosen) - len(sybils)
    # With the trusted friends held by that job, the Sybils still cannot form one alone: the next job waits.
    assert assigned(apply(state, ask(state, want=4))) == ()


def test_with_no_trusted_friend_live_probationary_friends_serve():
    """A new farm has no reputation yet: probationary friends fill jobs until trusted ones exist."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10), ("c/1", P5, 10)])
    assert len(assigned(apply(state, ask(state, want=3)))) == 3


def test_reputation_is_earned_from_own_checks_only_and_reset_by_a_failure():
    """Peer checks move the clean run, never the reputation; the requester's own checks move it; a failure resets it."""
    state = master([("a/1", P5, 10), ("b/1", P5, 10)])
    apply(state, ask(state, want=2, frames=4))
    apply(state, ReportJob(requester="R", job=1, check_outcomes={"a/1": (True,) * 5}, own_outcomes={"b/1": (True, True)}, now=11))
    assert state.friends["a/1"].clean_run == 5 and state.friends["a/1"].reputation == 0
    assert state.friends["b/1"].reputation == 2
    for friend in ("a/1", "b/1"):
        apply(state, Heartbeat(friend=friend, key="key-" + friend[0], now=12))
    apply(state, ask(state, want=2, frames=4, now=12))
    apply(state, ReportJob(requester="R", job=2, own_outcomes={"b/1": (True, False)}, now=13))
    assert state.friends["b/1"].reputation == 0


def test_an_evicted_friend_forfeits_and_its_owner_is_fined_to_the_submitter():
    """Eviction: no pay, the owner pays its fair share of the job (capped at its balance) to the submitter, reputation 0."""
    from frender.core.master import FriendFined, ReputationChanged

    state = master([("a/1", P5, 10), ("b/1", P5, 10)], points=100)
    apply(state, GrantPoints(user="a", key="key-a", amount=3))
    apply(state, ask(state, want=2, frames=8))  # escrow 8 + 2; a fair share is 4 frames + 1 check
    evolve(state, ReputationChanged(friend="a/1", job=1, reputation=7, passed=7, failed=0))
    events = apply(state, ReportJob(requester="R", job=1, payouts={"b/1": 9}, evicted=("a/1",), evidence={"a/1": "frame 3: black"}, now=20))
    fine = next(e for e in events if isinstance(e, FriendFined))
    assert (fine.forfeited, fine.points, fine.to, fine.evidence) == (5, 3, "artist", "frame 3: black")
    assert state.accounts["a"].balance == 0 and state.accounts["b"].balance == 9
    assert state.accounts["artist"].balance == 100 - 10 + 1 + 3  # refund of the unpaid escrow, plus the fine
    assert state.friends["a/1"].reputation == 0
    assert state.balances() + state.escrow() == state.granted
