"""The requester's scheduler, table-driven: chunks, deadlines, retries, friends gone, backups, duplicates."""

from __future__ import annotations

import hashlib

import attrs
import pytest

from frender.core import job as J
from frender.core._decider import Rejected


def image(frame: int) -> str:
    return hashlib.sha256(f"frame {frame}".encode()).hexdigest()


class Run:
    """One job driven by hand: each call decides, then evolves, like the shell."""

    def __init__(self, frames=range(1, 11), friends=("a", "b", "c"), escrow=1, **settings) -> None:
        self.state = J.Requester()
        self.now = 0.0
        self.n = 0
        legacy = {"crop_checks": False, "random_order": False}  # full-frame checks, frames handed out in order
        self.settings = J.JobSettings(**{"adaptive": False, **legacy, "seconds_per_frame": 1.0, "startup_seconds": 0.0, **settings})
        self.do(J.StartJob, frames=tuple(frames), settings=self.settings, checks_escrowed=escrow)
        if friends:  # none: a job that waits for its first friends
            self.add(*friends)

    def add(self, *friends: str) -> list[object]:
        return self.do(J.AddFriends, friends=tuple(J.GrantedFriend(friend=f, owner="o-" + f) for f in friends))

    def do(self, command: type, **kw) -> list[object]:
        self.n += 1
        kw.setdefault("now", self.now)
        kw.setdefault("entropy", f"{self.n:032x}")  # StartJob's: the job's seed of windows drawn ahead
        events = J.decide(self.state, command(job=1, **kw))
        for e in events:
            J.evolve(self.state, e)
        return events

    @property
    def job(self) -> J.Job:
        return self.state.jobs[1]

    @property
    def queue(self) -> tuple[int, ...]:
        return J.queued(self.state, 1)

    @property
    def finished(self) -> bool:
        return J.is_finished(self.state, 1)

    def ask(self, friend: str) -> J.TaskAssigned | None:
        got = [e for e in self.do(J.AskForTask, friend=friend) if isinstance(e, J.TaskAssigned)]
        return got[0] if got else None

    def drain(self, friend: str) -> None:
        """``friend`` takes and delivers every queued frame."""
        while self.queue:
            task = self.ask(friend)
            assert task is not None
            self.deliver(task)

    def deliver(self, task: J.TaskAssigned, sha=image, ok=True) -> list[object]:
        out: list[object] = []
        for frame in task.frames:
            out += self.do(J.DeliverFrame, friend=task.friend, task=task.task, frame=frame, sha256=sha(frame), ok=ok)
        return out


def of(events: list[object], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.parametrize(
    ("remaining", "friends", "max_chunk", "chunk"),
    [
        (240, 32, 8, 4),  # ceil(240 / 64)
        (240, 4, 8, 8),  # capped at max_chunk
        (10, 3, 8, 2),
        (3, 8, 8, 1),  # never below one
        (0, 8, 8, 1),
        (100, 0, 8, 8),  # no live friend counts as one
    ],
)
def test_chunk_shrinks_as_the_queue_empties(remaining: int, friends: int, max_chunk: int, chunk: int) -> None:
    """Guided self-scheduling: ceil(remaining / 2N) within [1, max_chunk]."""
    assert J.chunk_size(remaining, friends, max_chunk) == chunk


@pytest.mark.parametrize(
    ("startup", "per_frame", "max_chunk", "floor"),
    [(0.0, 1.0, 8, 1), (0.5, 0.25, 8, 4), (5.0, 1.0, 8, 8), (0.6, 0.3, 3, 3)],
)
def test_start_up_sets_a_floor_on_the_chunk(startup: float, per_frame: float, max_chunk: int, floor: int) -> None:
    """A task has enough frames that Blender's start-up costs at most half a frame per frame."""
    settings = J.JobSettings(startup_seconds=startup, seconds_per_frame=per_frame, max_chunk=max_chunk)
    assert settings.min_chunk() == floor
    assert J.chunk_size(64, 8, max_chunk, floor) == min(max_chunk, max(floor, 4))  # fewer, longer tasks
    assert J.chunk_size(9, 3, max_chunk, floor) <= 3  # but never more than a fair share: every friend works


def test_tasks_are_runs_that_shrink_and_cover_every_frame_once() -> None:
    """Consecutive asks hand out disjoint runs of queued frames, shrinking towards the tail (Rule 13's limit off)."""
    run = Run(frames=range(1, 41), friends=("a", "b"), unverified_batches=0)
    sizes, seen = [], []
    while run.queue:
        task = run.ask("a") or run.ask("b")
        assert task is not None
        sizes.append(len(task.frames))
        seen += task.frames
        run.deliver(task)
    assert sorted(seen) == list(range(1, 41))
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1


def test_deadline_is_proportional_to_the_chunk() -> None:
    """deadline = now + factor x (start-up + frames x seconds per frame)."""
    run = Run(frames=range(1, 21), friends=("a",), seconds_per_frame=2.0, startup_seconds=1.0, deadline_factor=3.0)
    run.now = 5.0
    task = run.ask("a")
    assert task is not None
    assert task.deadline == 5.0 + 3.0 * (1.0 + 2.0 * len(task.frames))


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("deadline", "deadline"),
        ("gone", "gone"),
        ("returned", "returned"),
    ],
)
def test_a_lost_task_goes_back_and_to_another_friend(how: str, why: str) -> None:
    """A task past its deadline, of a friend gone, or handed back is re-queued and given to someone else."""
    run = Run(frames=range(1, 5), friends=("a", "b"), max_chunk=2)
    task = run.ask("a")
    assert task is not None
    if how == "deadline":
        run.now = task.deadline
        events = run.do(J.Tick)
    elif how == "gone":
        events = run.do(J.DropFriend, friend="a")
    else:
        events = run.do(J.ReturnTask, friend="a", task=task.task)
    [dropped] = of(events, J.TaskDropped)
    assert dropped.why == why and dropped.frames == task.frames
    assert set(task.frames) <= set(run.queue)
    if how != "gone":
        # "a" asks first, but frames it lost go to "b" while "b" has not tried them.
        again = run.ask("a")
        assert again is None or not set(again.frames) & set(task.frames)
    retry = run.ask("b")
    assert retry is not None and set(task.frames) & set(retry.frames)


def test_the_same_friend_retries_only_when_nobody_else_is_left() -> None:
    """Rule 3 yields when the only live friend is the one that lost the frame."""
    run = Run(frames=(7,), friends=("a", "b"))
    task = run.ask("a")
    assert task is not None
    run.now = task.deadline
    run.do(J.Tick)
    run.do(J.DropFriend, friend="b")
    again = run.ask("a")
    assert again is not None and again.frames == (7,)


def test_late_copy_after_a_deadline_is_recorded_and_ignored() -> None:
    """A copy from a dropped task is logged as late and changes nothing."""
    run = Run(frames=(1, 2), friends=("a", "b"), max_chunk=2)
    task = run.ask("a")
    assert task is not None
    run.now = task.deadline
    run.do(J.Tick)
    events = run.do(J.DeliverFrame, friend="a", task=task.task, frame=task.frames[0], sha256=image(task.frames[0]))
    assert [e.role for e in of(events, J.CopyReceived)] == ["late"]
    assert J.delivered_and_final(run.state, 1) == (0, 0) and set(task.frames) <= set(run.queue)


def test_a_fault_retries_the_frame_without_punishing() -> None:
    """A frame that fails to decode goes back to the queue; the friend stays in the job."""
    run = Run(frames=(1, 2), friends=("a", "b"), max_chunk=2)
    task = run.ask("a")
    assert task is not None
    events = run.do(J.DeliverFrame, friend="a", task=task.task, frame=task.frames[0], ok=False, reason="wrong size")
    assert of(events, J.CopyFaulted) and task.frames[0] in run.queue
    assert J.friend_status(run.state, 1, "a") == "active"


def test_every_friend_gone_asks_the_master_once() -> None:
    """MoreFriendsWanted is emitted once when the last friend goes, not on every tick, and again after a new grant."""
    run = Run(frames=range(1, 5), friends=("a", "b"))
    run.ask("a")
    assert not of(run.do(J.DropFriend, friend="a"), J.MoreFriendsWanted)
    [want] = of(run.do(J.DropFriend, friend="b"), J.MoreFriendsWanted)
    assert want.count == 2
    run.now = 300.0  # within starved_after: a tick past it fails the starved job (Rule 18, tests/core/test_job_starved.py)
    assert not of(run.do(J.Tick), J.MoreFriendsWanted)
    run.add("c")
    assert run.ask("c") is not None
    assert of(run.do(J.DropFriend, friend="c"), J.MoreFriendsWanted)


def test_a_gone_friend_that_asks_again_is_back() -> None:
    """A friend that reconnects after being reported gone is live again."""
    run = Run(frames=range(1, 5), friends=("a", "b"))
    run.do(J.DropFriend, friend="a")
    events = run.do(J.AskForTask, friend="a")
    assert of(events, J.FriendReturned) and J.friend_status(run.state, 1, "a") == "active"


def ask_ahead(run: Run, friend: str, *keeping: int) -> tuple[list[object], J.TaskAssigned | None]:
    events = run.do(J.AskForTask, friend=friend, keeping=keeping)
    got = [e for e in of(events, J.TaskAssigned) if e.friend == friend]
    return events, got[0] if got else None


def test_asking_again_gives_up_every_task_not_kept() -> None:
    """A plain ask replaces what the friend held; an ask that keeps a task leaves it live (Rule 9)."""
    run = Run(frames=range(1, 41), friends=("a", "b"), max_chunk=4)
    first = run.ask("a")
    assert first is not None
    events, ahead = ask_ahead(run, "a", first.task)
    assert not of(events, J.TaskDropped) and ahead is not None and ahead.kind == "render"
    assert J.live_tasks(run.state, 1, "a") == {first.task, ahead.task}
    events = run.do(J.AskForTask, friend="a")
    assert {e.task for e in of(events, J.TaskDropped)} == {first.task, ahead.task}
    assert all(e.why == "replaced" for e in of(events, J.TaskDropped))


def test_asking_ahead_gets_one_task_at_most() -> None:
    """A friend keeping two tasks gets nothing more, and a kept task must be its own and live."""
    run = Run(frames=range(1, 41), friends=("a", "b"), max_chunk=4)
    first = run.ask("a")
    assert first is not None
    _, second = ask_ahead(run, "a", first.task)
    assert second is not None
    events, third = ask_ahead(run, "a", first.task, second.task)
    assert third is None and not of(events, J.TaskDropped)
    b_task = run.ask("b")
    assert b_task is not None
    events, _ = ask_ahead(run, "a", b_task.task)  # not a's: a gives up both of its own
    assert {e.task for e in of(events, J.TaskDropped)} == {first.task, second.task}


def test_tasks_only_being_sent_are_kept_but_not_counted_ahead() -> None:
    """A task the friend has rendered and only sends stays live and leaves room for one task ahead (Rule 9)."""
    run = Run(frames=range(1, 41), friends=("a", "b"), max_chunk=4)
    first = run.ask("a")
    assert first is not None
    _, second = ask_ahead(run, "a", first.task)
    assert second is not None
    # first is rendered, its frames still on their way; second renders: a may take a third task ahead.
    events = run.do(J.AskForTask, friend="a", keeping=(second.task,), sending=(first.task,))
    third = [e for e in of(events, J.TaskAssigned) if e.friend == "a"]
    assert third and not of(events, J.TaskDropped)
    assert J.live_tasks(run.state, 1, "a") == {first.task, second.task, third[0].task}
    # Still one task ahead at most: keeping two it renders, it gets nothing.
    events = run.do(J.AskForTask, friend="a", keeping=(second.task, third[0].task), sending=(first.task,))
    assert not of(events, J.TaskAssigned) and not of(events, J.TaskDropped)


def test_a_tasks_deadline_counts_the_frames_its_friend_delivers_before_it() -> None:
    """A friend delivers in turn: a task handed ahead has time for what it still renders or sends first (Rule 3)."""
    run = Run(frames=range(1, 41), friends=("a", "b"), max_chunk=4)  # 1 s a frame, no start-up, deadline x3
    first = run.ask("a")
    assert first is not None and first.deadline == run.now + 3 * len(first.frames)
    run.now += 1.0
    run.do(J.DeliverFrame, friend="a", task=first.task, frame=first.frames[0], sha256=image(first.frames[0]), ok=True)
    _, ahead = ask_ahead(run, "a", first.task)
    assert ahead is not None
    assert ahead.deadline == run.now + 3 * (len(first.frames) - 1 + len(ahead.frames))
    # The first task's frames are all rendered and being sent; a third task waits for those and the second's.
    events = run.do(J.AskForTask, friend="a", keeping=(ahead.task,), sending=(first.task,))
    [third] = [e for e in of(events, J.TaskAssigned) if e.friend == "a"]
    assert third.deadline == run.now + 3 * (len(first.frames) - 1 + len(ahead.frames) + len(third.frames))


def test_tasks_claimed_as_being_sent_are_bounded() -> None:
    """Past SENDING_FREE tasks named as only being sent, each counts ahead: a friend cannot hoard tasks (Rule 9)."""
    from frender.core.job._tasks import SENDING_FREE

    run = Run(frames=range(1, 201), friends=("a", "b"), max_chunk=1)
    held = [run.ask("a")]
    while True:
        assert held[-1] is not None and len(held) < 100
        events = run.do(J.AskForTask, friend="a", keeping=(held[-1].task,), sending=tuple(t.task for t in held[:-1]))
        assert not of(events, J.TaskDropped)
        got = [e for e in of(events, J.TaskAssigned) if e.friend == "a"]
        if not got:
            break
        held.append(got[0])
    assert len(J.live_tasks(run.state, 1, "a")) == len(held) == SENDING_FREE + 2


def test_asking_ahead_near_the_end_gets_no_render_and_never_a_backup() -> None:
    """With no more frames queued than active friends, the last frames go to idle friends (Rule 9)."""
    run = Run(frames=range(1, 4), friends=("a", "b", "c"), escrow=5, max_chunk=1, check_timing="end")
    first = run.ask("a")
    assert first is not None and len(run.queue) == 2
    _, ahead = ask_ahead(run, "a", first.task)
    assert ahead is None
    idle = run.ask("b")
    assert idle is not None and idle.kind == "render"
    run.ask("c")
    run.now += 100.0  # every task is late now
    _, ahead = ask_ahead(run, "a", first.task)
    assert ahead is None  # no backup for a friend still rendering
    _, backup = ask_ahead(run, "a")
    assert backup is not None and backup.kind == "backup"


def test_an_on_time_task_gets_no_backup() -> None:
    """Backups copy late tasks only: a copy of a task on time would not be done sooner."""
    run = Run(frames=range(1, 9), friends=("a", "b"), escrow=5, max_chunk=8, check_timing="end")
    slow = run.ask("a")
    assert slow is not None
    run.drain("b")
    run.now += 0.9 * run.settings.late_after(len(slow.frames))
    assert run.ask("b") is None
    run.now += 0.1 * run.settings.late_after(len(slow.frames))
    backup = run.ask("b")
    assert backup is not None and backup.kind == "backup" and backup.backup_of == slow.task


def test_idle_friend_takes_a_backup_of_the_slowest_task_and_the_pair_is_compared() -> None:
    """With an empty queue, an idle friend gets a backup copy; the first copy wins, the second is a check."""
    run = Run(frames=range(1, 9), friends=("a", "b", "c"), escrow=3, max_chunk=8, check_timing="end")
    slow = run.ask("a")
    assert slow is not None
    run.drain("b")
    assert run.ask("c") is None  # the slow task is not late yet: a copy would be done no sooner
    run.now += run.settings.late_after(len(slow.frames))
    backup = run.ask("c")
    assert backup is not None and backup.kind == "backup" and backup.backup_of == slow.task
    assert set(backup.frames) <= set(slow.frames)
    first = run.deliver(backup)
    assert {e.role for e in of(first, J.CopyReceived)} == {"candidate"}
    second = run.deliver(slow)
    roles = [e.role for e in of(second, J.CopyReceived)]
    assert set(roles[: len(backup.frames)]) <= {"pair", "duplicate"} and "pair" in roles
    pairs = [c for c in J.checks(run.state, 1) if c.kind == "pair"]
    assert pairs and all(c.subject == "c" and c.verifier == "a" and c.outcome == "agreed" for c in pairs)


def test_a_frame_already_copied_gets_no_second_backup() -> None:
    """Once a backup delivered a slow task's frames, idle friends get no more copies of them."""
    run = Run(frames=range(1, 5), friends=("a", "b"), escrow=20, max_chunk=8, check_timing="end")
    slow = run.ask("a")
    assert slow is not None
    run.drain("b")
    run.now += run.settings.late_after(len(slow.frames))
    backup = run.ask("b")
    assert backup is not None and backup.kind == "backup"
    run.deliver(backup)
    for _ in range(3):
        again = run.ask("b")
        assert again is None or not set(again.frames) & set(backup.frames)


def test_backups_stay_within_the_check_budget() -> None:
    """No check budget left: no backup copy."""
    run = Run(frames=range(1, 9), friends=("a", "b", "c"), escrow=0, max_chunk=8)
    run.ask("a")
    run.drain("b")
    run.now += 100.0  # late, but no budget
    assert run.ask("c") is None


def test_duplicate_copies_of_final_frames_are_ignored() -> None:
    """A frame is final exactly once; a second copy after that is a duplicate."""
    run = Run(frames=(1,), friends=("a", "b"), escrow=0)
    task = run.ask("a")
    assert task is not None
    events = run.deliver(task)
    [final] = of(events, J.FramesFinal)
    assert [f.frame for f in final.frames] == [1]
    assert of(events, J.JobFinished)
    with pytest.raises(Rejected) as err:
        run.deliver(task)
    assert err.value.code == "job-state"


@pytest.mark.parametrize(
    ("command", "kw", "code"),
    [
        (J.DeliverFrame, dict(friend="a", task=99, frame=1, sha256="x"), "unknown-task"),
        (J.DeliverFrame, dict(friend="b", task=1, frame=1, sha256="x"), "not-yours"),
        (J.DeliverFrame, dict(friend="a", task=1, frame=9, sha256="x"), "not-in-task"),
        (J.DeliverFrame, dict(friend="a", task=1, frame=1, sha256=""), "bad-sha"),
        (J.AskForTask, dict(friend="zed"), "unknown-friend"),
        (J.ReturnTask, dict(friend="b", task=1), "unknown-task"),
        (J.RecordComparison, dict(check=5, verdict="agree", a_sha256="a", b_sha256="b"), "unknown-check"),
        (J.RecordOwnRender, dict(check=5, sha256="x"), "unknown-check"),
        (J.AddFriends, dict(friends=(J.GrantedFriend(friend="a", owner="x"),)), "known-friend"),
        (J.Tick, dict(now=float("nan")), "bad-time"),
    ],
)
def test_bad_commands_are_rejected_cleanly(command: type, kw: dict, code: str) -> None:
    """Wrong commands raise Rejected with a stable code and leave the state alone."""
    run = Run(frames=(1, 2), friends=("a", "b"), max_chunk=1)
    run.ask("a")
    before = run.job.clone()
    with pytest.raises(Rejected) as err:
        run.do(command, **kw)
    assert err.value.code == code
    assert run.job == before


def test_a_large_job_runs_to_its_end() -> None:
    """240 frames on 32 friends asking in turn finish within a bounded number of commands (the time a decision
    takes is measured by bench/attacks.py, not asserted here: machines are noisy)."""
    run = Run(frames=range(1, 241), friends=tuple(f"f{i}" for i in range(32)), escrow=2)
    commands = 0
    while not run.finished and commands < 5000:
        for i in range(32):
            task = run.ask(f"f{i}")
            commands += 1
            if task is not None:
                run.deliver(task)
                commands += len(task.frames)
            if run.finished:
                break
    assert run.finished


def test_a_draft_equals_the_job_and_shares_no_container_with_it() -> None:
    """``Job.clone`` copies every field and every dict, list and set, so deciding never changes the state."""
    run = Run(frames=range(1, 9), friends=("a", "b"), escrow=2, max_chunk=2)
    run.deliver(run.ask("a"))
    run.ask("b")
    job = run.job
    draft = job.clone()
    assert draft == job
    for record, copy in ((job, draft), (job.tasks, draft.tasks), (job.checks, draft.checks), (job.frames, draft.frames), (job.escrow, draft.escrow)):
        for field in attrs.fields(type(record)):
            value = getattr(record, field.name)
            if isinstance(value, (dict, list, set)):
                assert getattr(copy, field.name) is not value, f"{type(record).__name__}.{field.name} is shared"
