"""Tasks: the queue of frames, who renders what, deadlines, retries and backups (Rules 3 and 9).

Invariants: a queued frame has no candidate or final copy and no live render or
backup task; a frame a friend lost is not given to it again while another live
friend has not lost it; a friend holds at most two tasks it is rendering (one asked for ahead), and at most
``SENDING_FREE`` more whose frames it has all rendered and is only sending;
a backup copies only the undelivered frames of a late render task.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import Factory, define, frozen

from frender.core import _circle
from frender.core._decider import Rejected
from frender.core.job import _checks, _tiles
from frender.core.job._escrow import Use, room
from frender.core.job._states import FRIEND
from frender.core.job.commands import AskForTask, DropFriend, ReturnTask, Tick
from frender.core.job.events import (
    CheaterEvicted,
    CheckTiming,
    CopyFaulted,
    CopyReceived,
    DropReason,
    FramesRecalled,
    FriendLeft,
    FriendReturned,
    Role,
    TaskAssigned,
    TaskDropped,
    TaskKind,
)

if TYPE_CHECKING:
    from frender.core.job._job import Draft, Friend, Job

__all__ = ["SENDING_FREE", "Task", "Tasks", "chunk_size", "known_friend", "blocked", "rendering", "ask", "tick", "drop_friend", "return_task", "EVOLVERS"]


@frozen(kw_only=True)
class Task:
    task: int
    friend: str
    kind: TaskKind
    frames: tuple[int, ...]
    checks: tuple[int, ...] = ()  # for check tasks, one per frame
    backup_of: int | None = None
    deadline: float
    assigned: float


@define(kw_only=True)
class Tasks:
    queue: list[int]  # sorted frames waiting for a friend
    tried: dict[int, frozenset[str]] = Factory(dict)  # frame -> friends that lost it (Rule 3)
    by_number: dict[int, Task] = Factory(dict)
    live: dict[int, frozenset[int]] = Factory(dict)  # live task -> frames it has not delivered
    live_of: dict[str, frozenset[int]] = Factory(dict)  # friend -> its live tasks
    holders: dict[int, frozenset[int]] = Factory(dict)  # frame -> live render/backup tasks
    backed: dict[int, int] = Factory(dict)  # render task -> its live backup task
    next_task: int = 1

    def clone(self) -> Tasks:
        return Tasks(
            queue=self.queue.copy(),
            tried=self.tried.copy(),
            by_number=self.by_number.copy(),
            live=self.live.copy(),
            live_of=self.live_of.copy(),
            holders=self.holders.copy(),
            backed=self.backed.copy(),
            next_task=self.next_task,
        )

    def renders(self, friend: str) -> bool:
        """``friend`` holds a live render or backup task."""
        return any(self.by_number[t].kind != _CHECK for t in self.live_of.get(friend, ()))


_CHECK = TaskKind.CHECK  # a module constant: enum members are slow to look up on their class
# Tasks a friend names as only being sent (``AskForTask.sending``) that do not count toward its one task ahead
# (Rule 9); past these, each counts. A friend sends two files side by side: two are enough for Blender to render
# while files leave; more would only queue tasks behind its uploads (a crop check is a task of one small file,
# and uploads slow with the machine's load) until their deadlines pass.
SENDING_FREE = 2


def chunk_size(remaining: int, friends: int, max_chunk: int, min_chunk: int = 1) -> int:
    """Guided self-scheduling: ceil(remaining / 2N), raised to ``min_chunk`` but never past a
    fair share ceil(remaining / N) (every friend gets work), and at most ``max_chunk``."""
    n = max(friends, 1)
    fair = math.ceil(remaining / n)
    return max(1, min(max_chunk, fair, max(min_chunk, math.ceil(remaining / (2 * n)))))


def known_friend(j: Job, friend: str) -> Friend:
    rec = j.friends.get(friend)
    if rec is None:
        raise Rejected("unknown-friend", f"{friend!r} is not a friend of job {j.job}")
    return rec


# ---------------------------------------------------------------- deciding


def ask(d: Draft, c: AskForTask) -> None:
    """A friend pulls work: checks first, then a render, then a backup; asking ahead gets no backup (Rule 9)."""
    j = d.job
    rec = known_friend(j, c.friend)
    if not FRIEND.allows(rec.status, "ask"):
        return  # evicted: nothing more for it in this job
    if FRIEND.next(rec.status, "ask", j.job, "friend", c.friend) != rec.status:  # it was gone: asking brings it back
        d.emit(FriendReturned(job=j.job, friend=c.friend, now=c.now))
    kept = sending = 0
    for t in sorted(j.tasks.live_of.get(c.friend, ())):  # asking again means it gave up what it does not keep
        if t in c.keeping:
            kept += 1
        elif t in c.sending:
            sending += 1
        else:
            d.drop(t, DropReason.REPLACED)
    # A task only being sent keeps the friend's Blender idle: it does not count toward the task ahead, so a
    # friend renders its next crop check while the last one's window is on its way (a put and a commit).
    kept += max(0, sending - SENDING_FREE)
    if kept > 1 or _checks.give_checks(d, c.friend) or not c.admit:  # Rule 21: checks only while not admitted
        return
    if not kept:
        _give_render(d, c.friend) or _give_backup(d, c.friend)
    elif len(j.tasks.queue) > len(j.active()):  # asking ahead: the last frames wait for idle friends
        _give_render(d, c.friend)


def rendering(j: Job, friend: str) -> int:
    """Frames ``friend`` has still to deliver of its live render and backup tasks (its checks not counted)."""
    t = j.tasks
    return sum(len(t.live[n]) for n in t.live_of.get(friend, ()) if t.by_number[n].kind != _CHECK)


def unverified(j: Job, friend: str) -> int:
    """Frames ``friend`` holds that no check has passed yet: undelivered frames of its live render and backup
    tasks, and its candidate copies (delivered, not final)."""
    return rendering(j, friend) + sum(1 for c in j.frames.copy.values() if c.friend == friend)


def blocked(j: Job, friend: str) -> bool:
    """Rule 16: an untrusted friend the requester has not found right in this job gets no more frames once the
    requester's own renders over untrusted friends' frames reach their bound, for its owner or for the job."""
    rec = j.friends[friend]
    s = j.settings
    if rec.reputation >= s.trusted_from or friend in j.checks.anchored:
        return False
    per_account, per_job = s.own_untrusted_bounds(len(j.frames.numbers))
    return j.checks.own_untrusted_of.get(rec.owner, 0) >= per_account or j.checks.own_untrusted >= per_job


def room_unverified(j: Job, friend: str) -> int:
    """Rule 13: how many more frames ``friend`` may take before its checks catch up (Rule 16: none once blocked)."""
    s = j.settings
    if blocked(j, friend):
        return 0
    batches = s.unverified_batches_trusted if j.friends[friend].reputation >= s.trusted_from else s.unverified_batches
    if not batches or not (s.crop_checks or s.check_timing == CheckTiming.BATCH):
        return 1 << 30  # no limit; nor when checks wait for the end (frames stay candidates until then)
    return batches * s.batch_size - unverified(j, friend)


def _give_render(d: Draft, friend: str) -> bool:
    j = d.job
    t = j.tasks
    if not t.queue:
        return False
    active = j.active()
    size = chunk_size(len(t.queue), len(active), j.settings.max_chunk, j.settings.min_chunk())
    size = min(size, room_unverified(j, friend))
    if size < 1:
        return False
    frames: list[int] = []
    queue = t.queue
    if j.settings.random_order and len(queue) > size:
        # Rule 12: a run starting at a random queued frame (shifted back to fill the chunk): the frames a
        # friend gets say nothing about which are first renders, re-renders, or anyone's checks.
        start = min(_circle.draw(d.entropy, f"{j.job}/run", len(queue)), len(queue) - size)
        queue = queue[start:] + queue[:start]
    if j.settings.tiles is not None:  # Rule 20: one tile a task, of the frame this friend's owner has least of
        whole = _tiles.whole_frame(j, friend, queue, len(active), size=room_unverified(j, friend), held=rendering(j, friend))
        if whole:
            queue, size = whole, len(whole)
        else:
            queue = _tiles.spread(j, friend, queue)
    for frame in queue:
        lost = t.tried.get(frame)
        if lost and friend in lost and any(a not in lost for a in active if a != friend):
            continue  # Rule 3: someone else should try it
        frames.append(frame)
        if len(frames) == size:
            break
    if not frames:
        return False
    frames.sort()
    d.emit(
        TaskAssigned(
            job=j.job,
            task=t.next_task,
            friend=friend,
            kind=TaskKind.RENDER,
            frames=tuple(frames),
            deadline=j.deadline(friend, d.now, len(frames)),
            now=d.now,
        )
    )
    return True


def _give_backup(d: Draft, friend: str) -> bool:
    """An idle friend takes a copy of the slowest late render task, within the check budget.

    Only a late task: a copy of one on time would be done no sooner and would
    keep the friend from the checks that fall due at the end of a job.
    """
    j = d.job
    t = j.tasks
    if not j.settings.backups:
        return False
    left = room(j, Use.BACKUP)
    if left < 1:
        return False
    slowest: tuple[int, float, int] | None = None
    uncopied: dict[int, tuple[int, ...]] = {}
    for number, undelivered in t.live.items():
        task = t.by_number[number]
        if task.kind != TaskKind.RENDER or task.friend == friend or number in t.backed:
            continue
        if d.now < task.assigned + j.settings.late_after(len(task.frames)):
            continue
        # Only frames nobody has delivered yet: a frame with a copy needs no second backup.
        missing = tuple(sorted(f for f in undelivered if f not in j.frames.copy and f not in j.frames.final))
        if not missing:
            continue
        uncopied[number] = missing
        key = (len(missing), -task.assigned, number)  # most frames missing, then the oldest
        if slowest is None or key[:2] > slowest[:2]:
            slowest = key
    if slowest is None:
        return False
    original = slowest[2]
    frames = uncopied[original][: min(left, j.settings.max_chunk, room_unverified(j, friend))]
    if not frames:
        return False
    d.emit(
        TaskAssigned(
            job=j.job,
            task=t.next_task,
            friend=friend,
            kind=TaskKind.BACKUP,
            frames=frames,
            backup_of=original,
            deadline=j.deadline(friend, d.now, len(frames)),
            now=d.now,
        )
    )
    return True


def tick(d: Draft, c: Tick) -> None:
    t = d.job.tasks
    for number in sorted(t.live):
        if t.by_number[number].deadline <= c.now:
            d.drop(number, DropReason.DEADLINE)


def drop_friend(d: Draft, c: DropFriend) -> None:
    j = d.job
    rec = known_friend(j, c.friend)
    if not FRIEND.allows(rec.status, "leave"):
        return  # gone already, or evicted
    for number in sorted(j.tasks.live_of.get(c.friend, ())):
        d.drop(number, DropReason.GONE)
    d.emit(FriendLeft(job=j.job, friend=c.friend, now=c.now))


def return_task(d: Draft, c: ReturnTask) -> None:
    t = d.job.tasks
    task = t.by_number.get(c.task)
    if task is None or task.friend != c.friend:
        raise Rejected("unknown-task", f"task {c.task} of job {d.job.job} is not {c.friend!r}'s")
    if c.task in t.live:
        d.drop(c.task, DropReason.RETURNED)


# ---------------------------------------------------------------- evolving


def _task_assigned(j: Job, e: TaskAssigned) -> None:
    t = j.tasks
    t.by_number[e.task] = Task(
        task=e.task, friend=e.friend, kind=e.kind, frames=e.frames, checks=e.checks, backup_of=e.backup_of, deadline=e.deadline, assigned=e.now
    )
    t.next_task = e.task + 1
    t.live[e.task] = frozenset(e.frames)
    t.live_of[e.friend] = t.live_of.get(e.friend, frozenset()) | {e.task}
    if e.kind == TaskKind.CHECK:
        return
    if e.kind == TaskKind.RENDER:
        taken = set(e.frames)
        t.queue = [f for f in t.queue if f not in taken]
    elif e.backup_of is not None:
        t.backed[e.backup_of] = e.task
    for frame in e.frames:
        t.holders[frame] = t.holders.get(frame, frozenset()) | {e.task}


def _requeue(j: Job, frame: int) -> None:
    """Back to the queue if nothing else will deliver it (Rule 3)."""
    t = j.tasks
    if frame not in j.frames.copy and frame not in j.frames.final and not t.holders.get(frame):
        at = bisect.bisect_left(t.queue, frame)
        if at == len(t.queue) or t.queue[at] != frame:
            t.queue.insert(at, frame)


def _lost(j: Job, friend: str, frame: int) -> None:
    j.tasks.tried[frame] = j.tasks.tried.get(frame, frozenset()) | {friend}
    _requeue(j, frame)


def _finish_task(t: Tasks, task: Task) -> None:
    del t.live[task.task]
    t.live_of[task.friend] = t.live_of[task.friend] - {task.task}
    t.backed.pop(task.task, None)
    if task.backup_of is not None and t.backed.get(task.backup_of) == task.task:
        del t.backed[task.backup_of]


def _unhold(t: Tasks, task: Task, frame: int) -> None:
    if task.kind != TaskKind.CHECK:
        t.holders[frame] = t.holders.get(frame, frozenset()) - {task.task}


def _task_dropped(j: Job, e: TaskDropped) -> None:
    t = j.tasks
    task = t.by_number[e.task]
    _finish_task(t, task)
    if task.kind == TaskKind.CHECK:
        return
    for frame in e.frames:
        _unhold(t, task, frame)
        _lost(j, task.friend, frame)


def _delivered_from(t: Tasks, task: Task, frame: int) -> None:
    """One frame of a live task is in (good, duplicate or faulted): the task progresses."""
    left = t.live[task.task] - {frame}
    _unhold(t, task, frame)
    if left:
        t.live[task.task] = left
    else:
        _finish_task(t, task)


def _copy_received(j: Job, e: CopyReceived) -> None:
    if e.role != Role.LATE:
        _delivered_from(j.tasks, j.tasks.by_number[e.task], e.frame)


def _copy_faulted(j: Job, e: CopyFaulted) -> None:
    task = j.tasks.by_number[e.task]
    _delivered_from(j.tasks, task, e.frame)
    if task.kind != TaskKind.CHECK:
        _lost(j, e.friend, e.frame)


def _cheater_evicted(j: Job, e: CheaterEvicted) -> None:
    for frame in e.discarded:  # the frames book dropped their copies first
        _lost(j, e.friend, frame)


def _frames_recalled(j: Job, e: FramesRecalled) -> None:
    for frame in e.requeued:  # the frames book withdrew them first
        _lost(j, e.friend, frame)


EVOLVERS: dict[type, Callable[[Job, Any], None]] = {
    TaskAssigned: _task_assigned,
    TaskDropped: _task_dropped,
    CopyReceived: _copy_received,
    CopyFaulted: _copy_faulted,
    CheaterEvicted: _cheater_evicted,
    FramesRecalled: _frames_recalled,
}
