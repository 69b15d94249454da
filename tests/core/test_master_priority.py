"""The master's queue: a job short of friends waits for them, and free friends go to waiting jobs by priority (Rule 10)."""

from __future__ import annotations

import pytest

from frender import codec
from frender.core._decider import Rejected, fold, is_durable
from frender.core.master import CreateAccount, FriendsAssigned, Heartbeat, JobPrioritised, Master, MasterSettings, RegisterFriend, ReportJob, decide, evolve
from frender.core.master import GrantPoints, TrustRequester
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
    with pytest.raises(Rejected) as err:  # a new job of lower priority: the one free friend is kept for the waiting job
        decide(state, ask(state, want=1, now=11.0))
    assert err.value.code == "no-friends" and "higher priority" in err.value.reason
    grew = apply(state, ask(state, want=1, job=high, now=11.0))
    assert assigned(grew) == ("c/1",) and state.jobs[high].waiting == 0 and state.waiting == {}
    _live(state, "d/1", 12.0)
    low = apply(state, ask(state, want=1, now=12.0))
    assert assigned(low) == ("d/1",)


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
    record(GrantPoints(user="artist", amount=100))
    for user, now in (("a", 10.0), ("b", 12.0)):
        record(CreateAccount(user=user, key="key-" + user))
        record(RegisterFriend(user=user, key="key-" + user, friend=user + "/1", profile=P5, now=now))
    [job] = {e.job for e in record(ask(state, want=3, priority=9)) if isinstance(e, FriendsAssigned)}
    assert state.waiting == {job: state.jobs[job]}
    with pytest.raises(Rejected):
        decide(state, ask(state, want=1, now=12.0))  # b/1 is kept for the waiting job of priority 9
    record(ReportJob(requester="R", job=job, payouts={"a/1": 1}, now=12.0))
    assert state.jobs[job].closed and state.waiting == {}
    assert set(assigned(record(ask(state, want=2, now=12.0)))) == {"a/1", "b/1"}  # the close released a/1 too
    durable = [codec.from_json(codec.tag_of(e), codec.to_json(e)) for e in log if is_durable(e)]
    replayed = fold(evolve, Master(settings=MasterSettings(friend_timeout=2.0)), durable)
    assert replayed.jobs == state.jobs and replayed.jobs[job].priority == 9 and replayed.waiting == {}
