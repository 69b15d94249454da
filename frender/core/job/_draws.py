"""Checks drawn: which delivered frames are checked, over which window, and by whom (Rules 4, 5 and 10).

Invariants: a friend is never checked by itself, a friend of its owner, or a
friend it was found mis-calibrated against; checks are drawn only after their
subject delivered the frames, from the command's entropy. With crop checks (the
default) every delivered frame is checked over a secret window of at least
1/16 of its area placed at random, by a checker drawn at random among the
eligible friends, trusted ones (the master's reputation) first; with none
eligible, the requester renders the window itself. With windows drawn ahead
(a still's tiles), a window only the requester renders is drawn from the job's
secret seed and its tile, so it is known, to the requester alone, from the
moment the tile is handed out; a window a friend renders is never drawn ahead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from frender.core import _circle
from frender.core.job._escrow import Use, room
from frender.core.job._states import FriendStatus
from frender.core.job.events import WINDOW_GRID, ChecksDrawn, CropWindow, JobSettings, OwnRenderRequested, Purpose, TaskAssigned, TaskKind

if TYPE_CHECKING:
    from frender.core.job._checks import Check
    from frender.core.job._job import Draft, Job

__all__ = [
    "CROP_SIDE", "checker", "check_verifier", "close_batches", "orphan_checks", "give_checks", "draw_window", "spot_chance", "window_ahead",
    "windows_ahead", "spotted_whole", "next_spot_chance",
]

_ACTIVE = FriendStatus.ACTIVE  # a module constant: enum members are slow to look up on their class
CROP_SIDE = WINDOW_GRID // 4  # a window is a quarter of the frame each way: 1/16 of its area
DRAW_RANGE = 1 << 32


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _eligible(j: Job, subject: str, candidate: str) -> bool:
    rec = j.friends[candidate]
    return (
        rec.status == _ACTIVE
        and candidate != subject
        and rec.owner != j.friends[subject].owner
        and pair(subject, candidate) not in j.checks.calibrated
    )


def checker(j: Job, subject: str) -> str | None:
    """Rule 5 (full-frame checks): the nearest eligible friend to the subject's left in the ring, or None (the requester)."""
    return _circle.checker(j.checks.ring, j.checks.position, subject, lambda candidate: _eligible(j, subject, candidate))


def crop_checker(j: Job, subject: str, draw: int, pools: dict[str, tuple[str, ...]] | None = None) -> str | None:
    """Rule 10: the eligible friend ``draw`` picks, among trusted ones while any is eligible; None: the requester.

    The draw is fixed when the check is drawn; the pool is read when the check is handed out, so a
    checker that left or was evicted is replaced by another draw from the same pool. ``pools`` memoises
    each subject's pool across one policy pass (the job does not change within it).
    """
    if pools is None:
        pool = crop_pool(j, subject)
    else:
        if subject not in pools:
            pools[subject] = crop_pool(j, subject)
        pool = pools[subject]
    return pool[draw % len(pool)] if pool else None


def even_draws(j: Job, subject: str, draws: tuple[int, ...], alone: tuple[bool, ...]) -> tuple[int, ...]:
    """Rule 10 with ``even_checkers``: ``draws`` (each picking a checker of a new check of ``subject``; ``alone``: the
    requester renders it alone, its draw is left as it is) moved so that each
    picks, in the pool the draw chooses from, the friend with the fewest checks owed in the job (pending, and in check
    tasks not yet delivered), counting those picked before it; ties go to the friend the draw picked, then the ones
    after it in the pool. The pool is unchanged (eligible, trusted first), and a draw still picks ``pool[draw % len]``,
    so a checker that leaves is replaced by the same rule as before. Without ``even_checkers``: ``draws`` unchanged."""
    if not j.settings.even_checkers or all(alone):
        return draws
    pool = crop_pool(j, subject)
    if not pool:
        return draws
    owed = dict.fromkeys(pool, 0)
    pools: dict[str, tuple[str, ...]] = {}
    for cid in j.checks.pending:
        c = j.checks.by_number[cid]
        verifier = check_verifier(j, c, pools) if c.window is not None else None
        if verifier in owed:
            owed[verifier] += 1
    for friend in pool:
        owed[friend] += sum(len(j.tasks.live[n]) for n in j.tasks.live_of.get(friend, ()) if j.tasks.by_number[n].kind == TaskKind.CHECK)
    n = len(pool)
    out = []
    for draw, requester_alone in zip(draws, alone):
        if requester_alone:
            out.append(draw)
            continue
        index = min(range(n), key=lambda i: (owed[pool[(draw + i) % n]], i))
        pick = (draw + index) % n
        owed[pool[pick]] += 1
        out.append(draw - draw % n + pick)
    return tuple(out)


def crop_pool(j: Job, subject: str) -> tuple[str, ...]:
    """The friends a crop check of ``subject`` is drawn among: the trusted eligible ones, else all eligible."""
    pool = [f for f in j.checks.ring if _eligible(j, subject, f)]
    trusted = [f for f in pool if j.friends[f].reputation >= j.settings.trusted_from]
    return tuple(trusted or pool)


def check_verifier(j: Job, c: Check, pools: dict[str, tuple[str, ...]] | None = None) -> str | None:
    """Who renders pending check ``c`` now; None: the requester (``pools``: see crop_checker)."""
    if c.by_requester:
        return None
    return crop_checker(j, c.subject, c.draw, pools) if c.window is not None else checker(j, c.subject)


def draw_window(entropy: str, label: str) -> CropWindow:
    """A window of 1/16 of the frame placed uniformly at random on the grid."""
    room_ = WINDOW_GRID - CROP_SIDE + 1
    return CropWindow(x=_circle.draw(entropy, f"{label}/x", room_), y=_circle.draw(entropy, f"{label}/y", room_), w=CROP_SIDE, h=CROP_SIDE)


def window_ahead(j: Job, unit: int) -> CropWindow | None:
    """The window of ``unit``'s check the requester renders alone, drawn ahead from the job's secret seed; None: none drawn ahead."""
    if not (j.settings.windows_ahead and j.seed and j.settings.crop_checks):
        return None
    return draw_window(j.seed, f"{j.job}/ahead/{unit}")


def windows_ahead(j: Job) -> dict[int, CropWindow]:
    """The units handed out (a render task holds them) whose checks the requester is sure to render alone, and their
    windows: a spot rendered alone on every frame of the friend's first batch in the job, or of a friend whose every
    batch is spotted (Rules 11 and 14). What the requester renders beside the friends' tiles, so a check waits for no
    render after the tile arrives; a guess that proves wrong (the escrow ran out, the tile was recalled) costs one window."""
    s = j.settings
    if not (s.windows_ahead and j.seed and s.spot_alone and s.crop_checks and s.checks_per_friend):
        return {}
    out: dict[int, CropWindow] = {}
    for friend, numbers in j.tasks.live_of.items():
        if next_spot_chance(j, friend) < 1.0:
            continue
        for number in numbers:
            if j.tasks.by_number[number].kind == TaskKind.CHECK:
                continue
            for unit in j.tasks.live[number]:
                window = window_ahead(j, unit)
                if window is not None:
                    out[unit] = window
    return out


def spot_chance(s: JobSettings, reputation: int) -> float:
    """Rule 14: the chance a trusted friend's batch (past its first in the job) is spot-checked; 1 for a
    probationary one. It falls with the requester's own checks the friend passed (its reputation), but only
    slowly: every batch until ``spot_trust_scale``, never below ``spot_floor``."""
    if reputation < s.trusted_from:
        return 1.0
    return max(s.spot_floor, min(1.0, max(s.spot_scale, s.spot_trust_scale) / (1 + reputation)))


def next_spot_chance(j: Job, friend: str) -> float:
    """Rules 11 and 14: the chance ``friend``'s next batch in the job is spotted: 1 for its first (``spot_first``), else
    ``spot_chance`` of its reputation."""
    s = j.settings
    if s.spot_first and friend not in j.checks.spotted:
        return 1.0
    return spot_chance(s, j.friends[friend].reputation)


def spotted_whole(j: Job, subject: str) -> bool:
    """Rule 11: every window of ``subject``'s batches is the requester's: the friends that may check it belong to
    fewer than ``spot_all_below`` owners (one account vouching for all it renders is no independent evidence)."""
    owners = {j.friends[f].owner for f in crop_pool(j, subject)}
    return 0 < len(owners) < j.settings.spot_all_below


def _spots(j: Job, subject: str, reputation: int, entropy: str, label: str, tests: tuple[int, ...]) -> tuple[int, ...]:
    """Rules 11 and 14: the test frames of a batch the requester renders too: every friend's first batch in the
    job, every probationary friend's batch, a trusted friend's with ``spot_chance``; ``spots_per_batch`` of them.

    Every one of them when the friends that may check the subject belong to fewer than ``spot_all_below`` owners:
    one account vouching for all a friend renders is no independent evidence (two colluders alone on a job,
    forging a few frames each, escaped two spots a batch; measured by bench/attacks_live.py)."""
    s = j.settings
    if not tests:
        return ()
    if spotted_whole(j, subject):
        return tests
    first = s.spot_first and subject not in j.checks.spotted
    if not first and _circle.draw(entropy, f"{label}/spot", DRAW_RANGE) >= spot_chance(s, reputation) * DRAW_RANGE:
        return ()
    if s.spots_per_batch == 1:
        return (tests[_circle.draw(entropy, f"{label}/spot-frame", len(tests))],)
    return tuple(sorted(_circle.sample(entropy, f"{label}/spot-frames", tests, min(s.spots_per_batch, len(tests)))))


def close_batches(d: Draft) -> None:
    """A batch closes when full ("batch"), when its friend is idle with nothing queued, or gone: draw its checks.

    Crop checks draw every frame of the batch, each with a secret window and a checker draw."""
    j = d.job
    s = j.settings
    for friend, frames in list(j.checks.open_batch.items()):
        if not frames:
            continue
        rec = j.friends[friend]
        full = (s.crop_checks or s.check_timing == "batch") and len(frames) >= s.batch_size
        idle = not j.tasks.queue and not j.tasks.renders(friend)
        if not (full or idle or rec.status == FriendStatus.GONE):
            continue
        if full:
            frames = frames[: s.batch_size]
        label = f"{j.job}/{friend}/{j.checks.next_batch}"
        if s.crop_checks:
            # Every frame is checked (checks_per_friend 0 turns checking off). Friends check what the escrow
            # pays for; the requester renders the rest itself, unpaid, so no frame goes final unchecked.
            tests = tuple(frames) if s.checks_per_friend else ()
            k = max(0, min(len(tests), room(j, Use.DRAW)))
            own = tests[k:]
            draws = tuple(_circle.draw(d.entropy, f"{label}/checker/{f}", DRAW_RANGE) for f in tests)
            spots = _spots(j, friend, rec.reputation, d.entropy, label, tests[:k])
            if s.spot_alone and spots:  # Rule 11: the requester renders a spot window in the friend's stead
                own = tuple(f for f in tests if f in spots or f in own)
            draws = even_draws(j, friend, draws, tuple(f in own for f in tests))
            # A window the requester renders alone may be the one drawn ahead (no friend ever sees it); a friend's is drawn now.
            windows = tuple((f in own and window_ahead(j, f)) or draw_window(d.entropy, f"{label}/window/{f}") for f in tests)
        else:
            want = s.checks_per_friend if rec.checked else 0
            k = max(0, min(want, len(frames), room(j, Use.DRAW)))
            tests = _circle.sample(d.entropy, label, frames, k)
            windows, draws, spots, own = (), (), (), ()
        d.emit(
            ChecksDrawn(
                job=j.job,
                subject=friend,
                batch=j.checks.next_batch,
                frames=frames,
                tests=tests,
                shas=tuple(j.frames.copy[f].sha256 for f in tests),
                first_check=j.checks.next_check,
                now=d.now,
                windows=windows,
                draws=draws,
                spots=spots,
                own=own,
            )
        )


def orphan_checks(d: Draft) -> None:
    """Rules 5 and 10: a check no live friend may render is rendered by the requester."""
    j = d.job
    pools: dict[str, tuple[str, ...]] = {}
    for cid in list(j.checks.pending):
        c = j.checks.by_number[cid]
        if check_verifier(j, c, pools) is None:
            d.emit(OwnRenderRequested(job=j.job, check=cid, frame=c.frame, purpose=Purpose.CHECK, now=d.now))


def give_checks(d: Draft, friend: str) -> bool:
    """The pending checks ``friend`` is the verifier of, as one task (Rule 4): distinct frames, or one crop window."""
    j = d.job
    mine: list[Check] = []
    frames: set[int] = set()
    verifier_of: dict[str, str | None] = {}
    pools: dict[str, tuple[str, ...]] = {}
    for cid in j.checks.pending:
        c = j.checks.by_number[cid]
        if c.window is not None:
            if not mine and check_verifier(j, c, pools) == friend:
                mine.append(c)
                break  # a window is one task: it names its frame's window
            continue
        if c.subject not in verifier_of:
            verifier_of[c.subject] = checker(j, c.subject)
        if verifier_of[c.subject] == friend and c.frame not in frames:
            mine.append(c)
            frames.add(c.frame)
            if len(mine) == j.settings.max_chunk:
                break
    if not mine:
        return False
    mine.sort(key=lambda c: c.frame)  # a check task reads like any run of frames (Rule 4)
    d.emit(
        TaskAssigned(
            job=j.job,
            task=j.tasks.next_task,
            friend=friend,
            kind=TaskKind.CHECK,
            frames=tuple(c.frame for c in mine),
            checks=tuple(c.check for c in mine),
            deadline=j.deadline(friend, d.now, len(mine)),
            now=d.now,
        )
    )
    return True
