"""A file that cannot render: the same render error from friends of different owners ends the job with it."""

from __future__ import annotations

import pytest

from frender import codec
from frender.core import job as J
from frender.core._decider import Rejected
from tests.core.test_job_schedule import Run, of

NO_CAMERA = "Blender exited with status 1: Error: Cannot render, no camera"


def _fail(run: Run, friend: str, error: str = NO_CAMERA) -> list[object]:
    task = run.ask(friend)
    assert task is not None
    return run.do(J.ReturnTask, friend=friend, task=task.task, error=error)


def test_the_same_error_from_two_owners_fails_the_job_unpunished_and_refunded() -> None:
    """One owner's error re-queues the task; the same error from a second owner fails the job, final frames paid, nobody evicted."""
    run = Run(frames=range(1, 9), friends=("a", "b", "c"), escrow=0, checks_per_friend=0, check_timing="batch", batch_size=1, max_chunk=2)
    done = run.ask("c")
    assert done is not None
    run.deliver(done)
    first = _fail(run, "a")
    assert of(first, J.RenderFailed) and not of(first, J.JobFailed) and not run.finished
    assert of(first, J.TaskDropped)  # its frames go back to the queue, as any returned task's
    second = _fail(run, "b", NO_CAMERA + "\n(Blender's next line)")
    [failed] = of(second, J.JobFailed)
    assert failed.error == NO_CAMERA
    s = J.summary(run.state, 1)
    assert s.failed and s.finished and not s.cancelled and s.failure == NO_CAMERA and J.running_jobs(run.state) == ()
    assert failed.report.payouts == {"c": len(done.frames)} and failed.report.evictions == {}
    assert failed.report.escrow == 8 and J.points(run.state, 1) == (8, len(done.frames))  # the master refunds the rest
    assert all(not p.evicted for p in J.progress(run.state, 1))
    assert J.outlook(run.state, 1, "c") == J.Outlook.DONE
    with pytest.raises(Rejected) as err:
        run.do(J.AskForTask, friend="c")
    assert err.value.code == "job-state" and "failed" in err.value.reason


def test_one_owner_or_different_errors_do_not_fail_a_job_with_other_owners() -> None:
    """Two friends of one owner, or two owners with different errors, leave the job running."""
    run = Run(frames=range(1, 9), friends=("a", "b"), checks_per_friend=0, check_timing="batch", batch_size=1, max_chunk=1)
    run.do(J.AddFriends, friends=(J.GrantedFriend(friend="a2", owner="o-a"),))
    _fail(run, "a")
    _fail(run, "a2")
    assert not run.finished
    _fail(run, "b", "Blender exited with status 1: something else")
    assert not run.finished
    assert of(_fail(run, "b"), J.JobFailed) and J.summary(run.state, 1).failed


def test_a_job_whose_friends_share_one_owner_fails_on_that_owners_report() -> None:
    """Every owner of the job reported the error: it fails."""
    run = Run(frames=range(1, 5), friends=("a",), checks_per_friend=0, check_timing="batch", batch_size=1)
    assert of(_fail(run, "a"), J.JobFailed)


class LoggedRun(Run):
    """A Run that keeps every event it evolved, as the shell's log would."""

    def do(self, command: type, **kw) -> list[object]:
        events = super().do(command, **kw)
        self.__dict__.setdefault("log", []).extend(events)
        return events


def test_a_return_without_an_error_is_no_failure_and_failures_replay() -> None:
    """A plain give-back records nothing; a failed job's events pass through the log's JSON and replay to the same state."""
    run = LoggedRun(frames=range(1, 5), friends=("a", "b"), checks_per_friend=0, check_timing="batch", batch_size=1)
    task = run.ask("a")
    assert task is not None
    assert not of(run.do(J.ReturnTask, friend="a", task=task.task), J.RenderFailed)
    _fail(run, "a")
    _fail(run, "b")
    assert J.summary(run.state, 1).failed
    logged = [codec.from_json(codec.tag_of(e), codec.to_json(e)) for e in run.log]
    assert logged == run.log and {"render_failed.v1", "job_failed.v1"} <= {codec.tag_of(e) for e in logged}
    state = J.Requester()
    for e in logged:
        J.evolve(state, e)
    assert state.jobs[1] == run.state.jobs[1]


@pytest.mark.parametrize("command", [J.AskForTask, J.Tick, J.CancelJob, J.DropFriend, J.ReturnTask])
def test_a_failed_job_takes_no_more_commands(command: type) -> None:
    """After a failure every command is refused by the job's transition table, and nothing changes."""
    run = Run(frames=range(1, 5), friends=("a",), checks_per_friend=0, check_timing="batch", batch_size=1)
    _fail(run, "a")
    before = run.state.jobs[1].clone()
    kw = {"friend": "a"} if command in (J.AskForTask, J.DropFriend) else {"friend": "a", "task": 0, "error": NO_CAMERA} if command is J.ReturnTask else {}
    with pytest.raises(Rejected) as err:
        run.do(command, **kw)
    assert err.value.code == "job-state" and "failed" in err.value.reason
    assert run.state.jobs[1] == before

