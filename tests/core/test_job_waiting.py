"""A job the master opened with no friend free: it waits with nothing to do, then runs once friends are added."""

from __future__ import annotations

import pytest

from frender.core import job as J
from frender.core._decider import Rejected
from tests.core.test_job_schedule import Run, of


def test_a_job_started_with_no_friends_waits_quietly() -> None:
    """With no friend granted a job is running, not stalled, asks the master for nothing itself, and ticks without effect."""
    run = Run(frames=range(1, 7), friends=(), checks_per_friend=1, check_timing="batch", batch_size=2)
    assert J.running_jobs(run.state) == (1,)
    assert J.progress(run.state, 1) == ()
    s = J.summary(run.state, 1)
    assert s.total == 6 and s.delivered == 0 and not s.stalled and not s.finished
    run.now = 100.0
    assert run.do(J.Tick) == []
    assert J.queued(run.state, 1) == tuple(range(1, 7))
    with pytest.raises(Rejected):  # nobody was granted: nobody takes work
        run.do(J.AskForTask, friend="a")


def test_a_waiting_job_runs_to_the_end_once_friends_come() -> None:
    """Friends added to a waiting job take its frames, get checked within the escrow, and the job finishes paying them."""
    run = Run(frames=range(1, 9), friends=(), escrow=2, checks_per_friend=1, check_timing="batch", batch_size=2)
    joined = of(run.add("a", "b"), J.FriendsJoined)
    assert [j.friends for j in joined] and run.job.escrow.granted == 2
    for _ in range(40):
        for friend in ("a", "b"):
            if run.finished:
                break
            task = run.ask(friend)
            if task is not None:
                run.deliver(task)
    assert run.finished
    report = J.report(run.state, 1)
    assert report is not None and sum(report.frame_points.values()) == 8
    assert sum(report.check_points.values()) <= report.escrow - 8 == 2 * 2


def test_cancelling_a_waiting_job_pays_nothing() -> None:
    """A job cancelled before any friend came reports no payout, so the master refunds its whole escrow."""
    run = Run(frames=range(1, 5), friends=(), checks_per_friend=1, check_timing="batch", batch_size=2)
    [cancelled] = of(run.do(J.CancelJob), J.JobCancelled)
    assert cancelled.report.payouts == {} and cancelled.report.escrow == 4
    assert J.is_finished(run.state, 1) and J.summary(run.state, 1).cancelled


@pytest.mark.parametrize(("frames", "asked"), [(10, 1), (10, 4), (1, 8)])
def test_checks_to_escrow_depends_on_the_friends_asked_for_not_granted(frames: int, asked: int) -> None:
    """The checks escrowed per friend come from the friends asked for, so a job granted none divides by nothing."""
    settings = J.JobSettings(checks_per_friend=1, check_timing="batch", batch_size=2)
    assert settings.checks_to_escrow(frames, asked) >= 1
    assert settings.checks_to_escrow(frames, 0) == settings.checks_to_escrow(frames, 1)
