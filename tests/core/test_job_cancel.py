"""Cancelling a job in the requester's core: it ends the job, keeps final frames, pays only what was earned."""

from __future__ import annotations

import attrs
import pytest

from frender import codec
from frender.core import job as J
from frender.core._decider import Rejected, fold
from tests.core.test_job_schedule import Run, image, of


def _logged(run: Run, events: list[object]) -> list[object]:
    return [codec.from_json(codec.tag_of(e), codec.to_json(e)) for e in events]


def test_cancel_keeps_final_frames_and_pays_them_only() -> None:
    """A cancelled job keeps its final frames, pays one point per final frame, and its report leaves the rest of the escrow unpaid."""
    run = Run(frames=range(1, 11), friends=("a", "b"), escrow=0, checks_per_friend=0, check_timing="batch", batch_size=1, max_chunk=2)
    task = run.ask("a")
    assert task is not None
    run.deliver(task)
    other = run.ask("b")
    assert other is not None
    run.deliver(attr_frames(other, other.frames[:1]))  # b delivered one frame of its task, the other is still rendering
    final = J.summary(run.state, 1).final
    assert len(final) == len(task.frames) + 1
    events = run.do(J.CancelJob)
    [cancelled] = of(events, J.JobCancelled)
    assert [type(e) for e in events] == [J.JobCancelled]
    s = J.summary(run.state, 1)
    assert s.cancelled and s.finished and J.is_finished(run.state, 1) and J.running_jobs(run.state) == ()
    assert s.final == final and all(J.final_copy(run.state, 1, f) is not None for f in final)
    assert cancelled.report.payouts == {"a": len(task.frames), "b": 1}
    assert cancelled.report.escrow == 10 and J.report(run.state, 1) == cancelled.report
    assert J.points(run.state, 1) == (10, len(final))
    assert J.outlook(run.state, 1, "b") == J.Outlook.DONE and J.silent_candidates(run.state, 1) == ()


def attr_frames(task: J.TaskAssigned, frames: tuple[int, ...]) -> J.TaskAssigned:
    return attrs.evolve(task, frames=frames)


@pytest.mark.parametrize("command", [J.AskForTask, J.Tick, J.CancelJob, J.DropFriend])
def test_a_cancelled_job_takes_no_more_commands(command: type) -> None:
    """After a cancel every command is refused by the job's transition table, and nothing changes."""
    run = Run(frames=range(1, 5), friends=("a",), checks_per_friend=0, check_timing="batch", batch_size=1)
    run.do(J.CancelJob)
    before = run.state.jobs[1].clone()
    kw = {"friend": "a"} if command in (J.AskForTask, J.DropFriend) else {}
    with pytest.raises(Rejected) as err:
        run.do(command, **kw)
    assert err.value.code == "job-state" and "cancelled" in err.value.reason
    assert run.state.jobs[1] == before


def test_a_finished_job_cannot_be_cancelled() -> None:
    """A finished job stays finished: cancelling it is refused."""
    run = Run(frames=range(1, 3), friends=("a",), checks_per_friend=0, check_timing="batch", batch_size=1)
    run.drain("a")
    assert J.summary(run.state, 1).phase == J.Phase.FINISHED
    with pytest.raises(Rejected):
        run.do(J.CancelJob)


def test_cancel_pays_agreeing_checks_but_not_open_ones() -> None:
    """Check renders that agreed are paid on cancel; candidates not final yet and open checks are not."""
    run = Run(frames=range(1, 9), friends=("a", "b"), checks_per_friend=1, check_timing="batch", batch_size=2, max_chunk=2, escrow=1)
    log: list[object] = []
    for _ in range(12):
        for friend in ("a", "b"):
            task = run.ask(friend)
            if task is not None:
                log += run.deliver(task)
        for e in of(log, J.ComparisonRequested):
            log += run.do(J.RecordComparison, check=e.check, against=e.against, a_sha256=e.a_sha256, b_sha256=e.b_sha256, verdict="identical")
        log = []
        if J.summary(run.state, 1).resolved:
            break
    assert J.summary(run.state, 1).resolved >= 1 and not run.finished
    escrowed, earned = J.points(run.state, 1)
    [cancelled] = of(run.do(J.CancelJob), J.JobCancelled)
    r = cancelled.report
    assert sum(r.payouts.values()) == earned <= escrowed == r.escrow
    assert sum(r.frame_points.values()) == len(J.summary(run.state, 1).final)
    assert sum(r.check_points.values()) == sum(p.checks_paid for p in J.progress(run.state, 1)) >= 1


def test_a_cancelled_log_replays_to_the_same_state() -> None:
    """The cancel event goes through the codec under its own tag and replays to the same state."""
    run = Run(frames=range(1, 5), friends=("a",), checks_per_friend=0, check_timing="batch", batch_size=1)
    events: list[object] = []
    state = J.Requester()
    commands = [
        J.StartJob(job=1, frames=(1, 2, 3, 4), settings=run.settings, checks_escrowed=0, now=0.0),
        J.AddFriends(job=1, friends=(J.GrantedFriend(friend="a", owner="o"),), entropy="00" * 16, now=0.0),
        J.AskForTask(job=1, friend="a", entropy="01" * 16, now=1.0),
    ]
    for c in commands:
        for e in J.decide(state, c):
            events.append(e)
            J.evolve(state, e)
    [task] = of(events, J.TaskAssigned)
    for c in (J.DeliverFrame(job=1, friend="a", task=task.task, frame=task.frames[0], sha256=image(task.frames[0]), now=2.0), J.CancelJob(job=1, now=3.0)):
        for e in J.decide(state, c):
            events.append(e)
            J.evolve(state, e)
    assert J.JobCancelled.tag == "job_cancelled.v1" and codec.tag_of(events[-1]) == "job_cancelled.v1"
    assert fold(J.evolve, J.Requester(), _logged(run, events)) == state
