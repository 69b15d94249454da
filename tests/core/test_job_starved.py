"""A starved job never waits forever (Rule 18): a job no friend can go on with asks the master for others, and fails
with why once ``starved_after`` seconds pass with no friend taking frames from it."""

from __future__ import annotations

import attrs

from frender import codec
from frender.core import job as J
from test_job_coalition import coalition_play
from test_job_crop import owners_run
from test_job_schedule import of


def sybils_caught(**settings) -> tuple[object, list[object]]:
    """Eight fresh accounts forging one image together, no other friend: all caught or blocked, the job starved."""
    friends = {f"s{i}": f"sybil{i}" for i in range(8)}
    run = owners_run(friends, {}, frames=range(1, 49), batch_size=8, max_chunk=8, **settings)
    events = coalition_play(run, dict.fromkeys(friends, 0))
    assert J.starved(run.state, 1) and of(events, J.MoreFriendsWanted)
    return run, events


def test_a_starved_job_fails_with_why_once_no_friend_came_in_time() -> None:
    """Starved at t, ticks before t + starved_after change nothing; the first tick after fails the job ("starved"),
    saying who was caught and what is final, with a report that pays what was final and nothing to the caught."""
    run, events = sybils_caught(starved_after=60.0)
    since = of(events, J.MoreFriendsWanted)[0].now
    run.now = since + 59.0
    assert not of(run.do(J.Tick), J.JobFailed) and not run.finished
    run.now = since + 60.0
    [failed] = of(run.do(J.Tick), J.JobFailed)
    assert failed.cause == J.Failure.STARVED and "caught forging" in failed.error and "within 60 s" in failed.error
    summary = J.summary(run.state, 1)
    assert summary.failed and summary.failure == failed.error and summary.failure_cause == "starved"
    assert J.starved(run.state, 1) == ""  # over: nothing starves any more
    caught = set(J.evictions(run.state, 1))
    assert caught and not any(failed.report.payouts.get(f) for f in caught)
    assert failed.report.caught_owners and set(failed.report.caught_owners) == caught


def test_a_friend_that_takes_frames_ends_the_starving() -> None:
    """A friend granted in time that takes frames to render restarts the count: the job does not fail while it works."""
    run, events = sybils_caught(starved_after=60.0)
    since = of(events, J.MoreFriendsWanted)[0].now
    run.now = since + 50.0
    run.do(J.AddFriends, friends=(J.GrantedFriend(friend="t", owner="trusted", reputation=40),))
    assert run.ask("t") is not None
    run.now = since + 200.0
    assert not of(run.do(J.Tick), J.JobFailed) and not run.finished


def test_a_render_failures_log_reads_and_encodes_as_before() -> None:
    """A render error's JobFailed, as logs from before starved jobs failed hold it, decodes as a render failure and
    re-encodes byte for byte; a starved one names its cause."""
    report = J.JobReport(job=1, frames=3)
    body = codec.to_json(J.JobFailed(job=1, error="Cannot render, no camera", report=report, now=1.0))
    assert body.startswith('{"error":"Cannot render, no camera","job":1,"now":1.0,"report":{') and "cause" not in body
    event = codec.from_json(J.JobFailed.tag, body)
    assert event.cause == J.Failure.RENDER and codec.to_json(event) == body
    assert '"cause":"starved"' in codec.to_json(attrs.evolve(event, cause=J.Failure.STARVED))
