"""A job's log in which final frames are recalled: played on the requester's core with real images, for the shell's tests.

Two trusted accounts forge one black image together beside two honest friends, with finality left to peer
agreement (``anchored_finality`` off), so forgeries become final before the requester's spot check catches one
forger; unravelling then recalls its final frames and they are rendered again (Rule 15 of the job core).
"""

from __future__ import annotations

import hashlib

from frender import blender
from frender.core import job as core

SIZE = (64, 36)
FRAMES = tuple(range(1, 41))
OWNERS = {"a": "m1", "b": "m2", "h": "o-h", "g": "o-g"}
FORGERS = ("a", "b")


def honest(frame: int) -> bytes:
    return blender.modelled_frame(frame, width=SIZE[0], height=SIZE[1])


BLACK_IMAGE = blender.forge_frame("black", width=SIZE[0], height=SIZE[1], other=None)
BLACK = hashlib.sha256(BLACK_IMAGE).hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def settings() -> core.JobSettings:
    return core.JobSettings(
        seconds_per_frame=1.0, startup_seconds=0.0, adaptive=False, anchored_finality=False, spot_first=False, spot_trust_scale=0.0,
        spot_floor=0.0, batch_size=4, max_chunk=4,
    )


def play(seed: int, *, now: float = 0.0, rounds: int = 20_000) -> tuple[list[object], dict[str, bytes]]:
    """Every event of job 1, in order, and the bytes of each image by its sha256 (copies are written from these)."""
    state = core.Requester()
    images = {sha(honest(n)): honest(n) for n in FRAMES} | {BLACK: BLACK_IMAGE}
    out: list[object] = []
    counter = [seed * 100_000]

    def do(command: type, **kw: object) -> list[object]:
        counter[0] += 1
        if command is not core.StartJob:
            kw["entropy"] = f"{counter[0]:032x}"
        events = core.decide(state, command(job=1, now=now, **kw))
        for e in events:
            core.evolve(state, e)
        out.extend(events)
        answer(events)
        return events

    answered: set[tuple] = set()

    def answer(events: list[object]) -> None:
        for e in list(events):
            key = (type(e).__name__, getattr(e, "check", None), getattr(e, "against", None), getattr(e, "purpose", None))
            if key in answered or not isinstance(e, (core.ComparisonRequested, core.OwnRenderRequested)):
                continue
            answered.add(key)
            check = core.check_of(state, 1, e.check)
            if check is None or check.state == "resolved":
                continue
            if isinstance(e, core.ComparisonRequested):
                same = e.a_sha256 == e.b_sha256
                do(core.RecordComparison, check=e.check, against=e.against, a_sha256=e.a_sha256, b_sha256=e.b_sha256,
                   verdict="identical" if same else "disagree", fraction_off=0.0 if same else 0.9, max_diff=0 if same else 255,
                   psnr=99.0 if same else 9.0)  # fmt: skip
            else:
                do(core.RecordOwnRender, check=e.check, sha256=sha(honest(e.frame)))

    s = settings()
    do(core.StartJob, frames=FRAMES, settings=s, checks_escrowed=s.checks_to_escrow(len(FRAMES), len(OWNERS)))
    do(core.AddFriends, friends=tuple(core.GrantedFriend(friend=f, owner=o, reputation=10) for f, o in OWNERS.items()))
    names = sorted(OWNERS)
    held: dict[str, list[list]] = {name: [] for name in names}
    for i in range(rounds):
        if core.is_finished(state, 1):
            break
        friend = names[i % len(names)]
        if not held[friend]:
            held[friend] = [[t, list(t.frames)] for t in do(core.AskForTask, friend=friend) if isinstance(t, core.TaskAssigned)]
            continue
        task, frames = held[friend][0]
        frame = frames.pop(0)
        if not frames:
            held[friend].pop(0)
        if task.task not in core.live_tasks(state, 1, friend):
            held[friend] = []
            continue
        image = sha(honest(frame))
        if friend in FORGERS:
            if task.kind == "check":
                check = core.check_of(state, 1, task.checks[task.frames.index(frame)])
                image = BLACK if check is not None and check.subject_sha256 == BLACK else image  # it vouches for forgeries
            else:
                image = BLACK
        do(core.DeliverFrame, friend=friend, task=task.task, frame=frame, sha256=image, ok=True, reason="")
    return out, images
