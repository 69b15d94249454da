"""The master's queue: a job short of friends waits for them, and free friends go to waiting jobs by priority (Rule 10)."""

from __future__ import annotations

import pytest

from frender import codec
from frender.core._decider import Rejected, fold, is_durable
from frender.core.master import CreateAccount, FriendsAssigned, Heartbeat, JobPrioritised, Master, MasterSettings, RegisterFriend, ReportJob, decide, evolve
from frender.core.master import EscrowFunded, GrantPoints, JobClosed, TrustRequester
from tests.core.test_master import P5, apply, ask, assigned, master


def _live(state: Master, name: str, now: float) -> None:
    user = name.split("/")[0]
    if user not in state.accounts:
        apply(state, CreateAccount(user=user, key="key-" + user))
    if name not in state.friends:
        apply(state, RegisterFriend(user=user, key="key-" + user, friend=name, profile=P5, now=now))
    apply(state, Heartbeat(friend=name, key="key-" + user, busy=False, now=now))


def test_a_short_job_waits_and_a_higher_priority_takes_freed_friends_first() -> None:
    """A high-priority job granted fewer friends keeps the next free one from a lower-priority job, then both grow."""
    state = master([("a/1", P5, 10.0), ("b/1", P5, 10.0)])
    events = apply(state, ask(state, want=3, priority=5))
    [high] = {e.job for e in events if isinstance(e, FriendsAssigned)}
    assert len(assigned(events)) == 2 and [e.priority for e in events if isinstance(e, JobPrioritised)] == [5]
    assert state.jobs[high].waiting == 1 and state.waiting == {high: state.jobs[high]}
    _live(state, "c/1", 11.0)
    # A new job of lower priority: the one free friend is kept for the waiting job, so it opens with none and waits.
    low = next(e for e in apply(state, ask(state, want=1, now=11.0)) if isinstance(e, FriendsAssigned))
    assert low.friends == () and state.jobs[low.job].waiting == 1
    with pytest.raises(Rejected) as err:  # asked again, still kept for the higher priority
        decide(state, ask(state, want=1, job=low.job, now=11.0))
    assert err.value.code == "no-friends" and "higher priority" in err.value.reason
    grew = apply(state, ask(state, want=1, job=high, now=11.0))
    assert assigned(grew) == ("c/1",) and state.jobs[high].waiting == 0 and state.waiting == {low.job: state.jobs[low.job]}
    _live(state, "d/1", 12.0)
    assert assigned(apply(state, ask(state, want=1, job=low.job, now=12.0))) == ("d/1",)


def test_equal_priority_does_not_block_a_newer_job() -> None:
    """A waiting job holds back friends only from jobs of lower priority, never from one of its own priority."""
    state = master([("a/1", P5, 10.0)])
    apply(state, ask(state, want=4))
    _live(state, "b/1", 11.0)
    assert assigned(apply(state, ask(state, want=1, now=11.0))) == ("b/1",)


def test_a_closed_job_stops_waiting() -> None:
    """Closing a waiting job (finished or cancelled) frees its claim on friends, and the whole log replays to the same state."""
    log: list[object] = []
    state = Master(settings=MasterSettings(friend_timeout=2.0))

    def record(command: object) -> list[object]:
        events = apply(state, command)
        log.extend(events)
        return events

    record(TrustRequester(key="R", name="requester"))
    record(CreateAccount(user="artist", key="key-artist"))
    record(GrantPoints(user="artist", key="key-artist", amount=100))
    for user, now in (("a", 10.0), ("b", 12.0)):
        record(CreateAccount(user=user, key="key-" + user))
        record(RegisterFriend(user=user, key="key-" + user, friend=user + "/1", profile=P5, now=now))
    [job] = {e.job for e in record(ask(state, want=3, priority=9)) if isinstance(e, FriendsAssigned)}
    assert state.waiting == {job: state.jobs[job]}
    [low] = {e.job for e in record(ask(state, want=2, now=12.0)) if isinstance(e, FriendsAssigned)}  # b/1 is kept: it waits
    assert state.jobs[low].friends == [] and set(state.waiting) == {job, low}
    record(ReportJob(requester="R", job=job, payouts={"a/1": 1}, now=12.0))
    assert state.jobs[job].closed and set(state.waiting) == {low}
    assert set(assigned(record(ask(state, want=2, job=low, now=12.0)))) == {"a/1", "b/1"}  # the close released a/1 too
    durable = [codec.from_json(codec.tag_of(e), codec.to_json(e)) for e in log if is_durable(e)]
    replayed = fold(evolve, Master(settings=MasterSettings(friend_timeout=2.0)), durable)
    assert replayed.jobs == state.jobs and replayed.jobs[job].priority == 9 and replayed.waiting == {}
    assert state.waiting == {}


def test_a_job_with_no_friend_free_opens_and_waits_with_only_its_frames_escrowed() -> None:
    """Every friend busy: a new job opens with none granted, escrows M alone, and the ledger balances (Rule 11)."""
    state = master([("a/1", P5, 10.0)])
    first = apply(state, ask(state, want=1, frames=4))
    assert assigned(first) == ("a/1",)
    events = apply(state, ask(state, want=3, frames=10))
    grant = next(e for e in events if isinstance(e, FriendsAssigned))
    assert grant.friends == () and grant.shortfall == 3
    assert [e.amount for e in events if isinstance(e, EscrowFunded)] == [10]  # M now, s per friend as friends come
    assert state.waiting == {grant.job: state.jobs[grant.job]} and state.jobs[grant.job].escrow == 10
    assert state.balances() + state.escrow() == state.granted


def test_a_waiting_job_grows_when_a_friend_frees_and_escrows_per_friend() -> None:
    """A waiting job's later request gets the freed friend and escrows s for it; never more than M + s·n."""
    state = master([("a/1", P5, 10.0)])
    busy = next(e for e in apply(state, ask(state, want=1, frames=4)) if isinstance(e, FriendsAssigned)).job
    waiting = next(e for e in apply(state, ask(state, want=2, frames=10, checks_per_friend=3)) if isinstance(e, FriendsAssigned)).job
    with pytest.raises(Rejected) as err:  # asked again while a/1 is still busy: a refusal, nothing moves
        decide(state, ask(state, want=2, job=waiting, frames=10))
    assert err.value.code == "no-friends"
    apply(state, ReportJob(requester="R", job=busy, payouts={"a/1": 4}, now=11.0))
    apply(state, Heartbeat(friend="a/1", key="key-a", now=11.0))
    events = apply(state, ask(state, want=2, job=waiting, frames=10, now=11.0))
    assert assigned(events) == ("a/1",) and [e.amount for e in events if isinstance(e, EscrowFunded)] == [3]
    assert state.jobs[waiting].escrow == 10 + 3 and state.jobs[waiting].waiting == 1
    assert state.balances() + state.escrow() == state.granted


def test_closing_a_waiting_job_refunds_its_whole_escrow() -> None:
    """A job cancelled while it waits (no friend ever came) gets every escrowed point back."""
    state = master([("a/1", P5, 10.0)], points=100)
    apply(state, ask(state, want=1, frames=4))
    before = state.accounts["artist"].balance
    job = next(e for e in apply(state, ask(state, want=2, frames=10)) if isinstance(e, FriendsAssigned)).job
    assert state.accounts["artist"].balance == before - 10
    closed = apply(state, ReportJob(requester="R", job=job, now=12.0))
    assert [e.refund for e in closed if isinstance(e, JobClosed)] == [10]
    assert state.accounts["artist"].balance == before and state.waiting == {} and state.balances() + state.escrow() == state.granted


@pytest.mark.parametrize(
    "friends",
    [
        [],  # no friend at all
        [("artist/pc", P5, 10.0)],  # only the submitter's own
    ],
)
def test_a_job_no_friend_could_ever_serve_is_refused(friends) -> None:
    """No registered friend of the profile but the submitter's own: a clear no-friends refusal naming the profile, nothing moves."""
    state = master(friends)
    with pytest.raises(Rejected, match="5.0.1") as err:
        decide(state, ask(state, want=2))
    assert err.value.code == "no-friends" and "never start" in err.value.reason
    assert state.jobs == {} and state.accounts["artist"].balance == 1000


def test_a_friend_refusing_the_submitter_cannot_keep_its_job_waiting() -> None:
    """A friend that refuses the submitter does not count as one that could serve it: refused rather than waiting forever."""
    state = master([("a/1", P5, 10.0)])
    apply(state, Heartbeat(friend="a/1", key="key-a", refuse=("artist",), now=10.0))
    with pytest.raises(Rejected) as err:
        decide(state, ask(state, want=1))
    assert err.value.code == "no-friends"


def test_a_waiting_job_hears_when_no_friend_could_serve_it_any_more() -> None:
    """A waiting job asking again after its only friend started refusing the submitter is told so, not just "none free"."""
    state = master([("a/1", P5, 10.0)])
    apply(state, ask(state, want=1, frames=4))
    job = next(e for e in apply(state, ask(state, want=1)) if isinstance(e, FriendsAssigned)).job
    with pytest.raises(Rejected) as err:
        decide(state, ask(state, want=1, job=job))
    assert "no live, available friend" in err.value.reason
    apply(state, Heartbeat(friend="a/1", key="key-a", busy=True, refuse=("artist",), now=10.0))
    with pytest.raises(Rejected) as err:
        decide(state, ask(state, want=1, job=job))
    assert err.value.code == "no-friends" and "any more" in err.value.reason


def test_a_request_granted_no_friend_names_its_cause_in_a_word() -> None:
    """No friend granted: the cause is paused, schedule, away, busy, probation, blender or class, as the registry stands."""
    from attrs import evolve as changed

    from frender.core.master import ReputationChanged, no_friends_cause

    state = master([("a/1", P5, 10.0)])
    assert no_friends_cause(state, ask(state, want=1, now=30.0)) == "away"  # its heartbeat is too old
    for away, cause in (("paused", "paused"), ("outside schedule", "schedule")):
        apply(state, Heartbeat(friend="a/1", key="key-a", away=away, now=10.0))
        assert no_friends_cause(state, ask(state, want=1)) == cause
    apply(state, Heartbeat(friend="a/1", key="key-a", now=10.0))
    apply(state, ask(state, want=1))  # a/1 takes a job
    assert no_friends_cause(state, ask(state, want=1)) == "busy"
    evolve(state, ReputationChanged(friend="a/1", job=1, reputation=7, passed=7, failed=0))  # trusted, and busy
    _live(state, "b/1", 10.0)  # free, but probationary: alone it may not fill a job (Rule 8)
    assert assigned(decide(state, ask(state, want=1))) == () and no_friends_cause(state, ask(state, want=1)) == "probation"
    assert no_friends_cause(state, ask(state, want=1, profile=changed(P5, blender_version="4.2.0"))) == "blender"
    assert no_friends_cause(state, ask(state, want=1, profile=changed(P5, cpu_class="arm64"))) == "class"


def test_a_closing_report_names_how_the_job_ended_and_nothing_else() -> None:
    """The closing report's outcome (finished, cancelled, failed) is kept with the job; any other word is refused."""
    state = master([("a/1", P5, 10.0)])
    job = next(e for e in apply(state, ask(state, want=1)) if isinstance(e, FriendsAssigned)).job
    with pytest.raises(Rejected) as err:
        decide(state, ReportJob(requester="R", job=job, outcome="closed", now=11.0))
    assert err.value.code == "bad-report"
    closed = [e for e in apply(state, ReportJob(requester="R", job=job, outcome="cancelled", now=11.0)) if isinstance(e, JobClosed)]
    assert closed[0].outcome == "cancelled" and state.jobs[job].outcome == "cancelled"
    assert "outcome" not in codec.converter.unstructure(JobClosed(job=1, refund=0, head_seq=0, head_hash="", now=1.0))  # old logs unchanged
