"""A still in tiles is counted as its artist counts it: a job's bound and `frender replay` speak of frames, tiles beside.

A real master, requester and friend (the modelled backend) on 127.0.0.1.
"""

from __future__ import annotations

import functools

import attrs
import trio

from frender.apps import messages as msg
from frender.apps.friend import run_friend
from frender.apps.replay import audit, render_text
from frender.apps.requester import RequesterSettings
from frender.blender import ModelledBackend
from frender.core import job as job_core
from frender.store import SqliteLog, events
from test_security import World, refused

BACKEND = ModelledBackend(0.01, resolution=(32, 18), frame_range=(1, 4))
SETTINGS = RequesterSettings(
    job=job_core.JobSettings(seconds_per_frame=1.0, startup_seconds=1.0, max_chunk=1), tick=0.1, grow_every=0.2
)


def _submit(frames: tuple[int, ...], tiles: str) -> msg.Submit:
    return msg.Submit(user="alice", blend_sha256="", friends=1, checks_per_friend=0, frames=frames, tiles=tiles)


async def _rendered(tmp_path, nursery, frames: tuple[int, ...], tiles: str) -> tuple[int, msg.ProgressReply]:
    """A farm of alice's requester and bob's one modelled friend renders ``frames`` in ``tiles``: the job and its last progress."""
    world = World(tmp_path, SETTINGS, bound=("alice", "bob"), backend=BACKEND)
    await world.start(nursery)
    world.run_requester(nursery)
    nursery.start_soon(
        functools.partial(run_friend, master=world.master, user="bob", name="pc", home=tmp_path / "bob", backend=BACKEND, threads=1, log=lambda line: None)
    )
    sha = await world.upload("alice")
    job = (await world.call("alice", world.requester, attrs.evolve(_submit(frames, tiles), blend_sha256=sha))).job
    with trio.fail_after(30):
        while not (p := await world.call("alice", world.requester, msg.Progress(job=job))).finished:
            await trio.sleep(0.1)
    return job, p


async def test_max_frames_bounds_frames_and_a_bound_on_tiles_is_named_apart(tmp_path, nursery):
    """Two frames in 2x2 tiles (8 tiles) pass a bound of 2 frames; 3 frames do not; max_tiles refuses more tiles, saying tiles."""
    world = World(tmp_path, attrs.evolve(SETTINGS, max_frames=2, max_tiles=8), backend=BACKEND)
    await world.start(nursery)
    await world.register_bob()  # a friend the job could start on
    sha = await world.upload("alice")
    submitted = await world.call("alice", world.requester, attrs.evolve(_submit((1, 2), "2x2"), blend_sha256=sha))
    assert submitted.frames == (1, 2) and submitted.tiles == "2x2"
    too_many = await refused("bad-job", world.call("alice", world.requester, attrs.evolve(_submit((1, 2, 3), ""), blend_sha256=sha)))
    assert "1 to 2 distinct frames" in str(too_many)
    tiles = await refused("bad-job", world.call("alice", world.requester, attrs.evolve(_submit((1, 2), "3x2"), blend_sha256=sha)))
    assert "12 tiles" in str(tiles) and "at most 8" in str(tiles)


async def test_replay_counts_a_still_in_frames_and_tiles(tmp_path, nursery):
    """A 1-frame still in 2x2 tiles, rendered: replay says "1 frame in 4 tiles (2x2)", 1 of 1 frame final and 4 of 4 tiles,
    where it said 4 frames, and tells each work unit as its frame and tile; its JSON carries the same counts."""
    job, p = await _rendered(tmp_path, nursery, (3,), "2x2")
    assert p.final == (3,)
    report = audit(tmp_path / "requester.db", job=job)
    [summary] = report["jobs"]
    assert (summary["frames"], summary["final"]) == (1, 1)
    assert summary["tiles"] == {"cols": 2, "rows": 2, "total": 4, "final": 4}
    text = render_text(report)
    assert f"Job {job} (finished): 1 frame in 4 tiles (2x2): 1 of 1 final, 4 of 4 tiles;" in text
    assert "bob/pc" in text and "4 final tiles" in text
    assert f"job {job} started: 1 frame in 4 tiles (2x2) (3)," in text
    story = [line["text"] for line in report["story"]]  # work units told as frame and tile: frame 3's are units 12-15
    assert any(line.startswith(f"job {job}: frames 3 (tile") and line.endswith("final") for line in story), story
    assert any("frame 3 (tile 0) from bob/pc" in line for line in story), story
    assert not any("frames 12" in line or "frame 12 " in line or "frames 13" in line for line in story), story
    whole_log = render_text(audit(tmp_path / "requester.db"))  # an opening is logged before it is a job
    assert "opening a job for alice: 1 frame in 4 tiles on 1 friends" in whole_log


async def test_an_animation_in_tiles_renders_whole_frames_as_their_tiles_and_shares_its_tail(tmp_path, nursery):
    """Four frames in 2x1 tiles on one friend: its tasks are whole frames (both tiles of one frame, rendered one after
    the other and delivered each under its own work unit) until the tail, and every frame ends final and stitched."""
    job, p = await _rendered(tmp_path, nursery, (1, 2, 3, 4), "2x1")
    assert p.final == (1, 2, 3, 4)
    log = SqliteLog(tmp_path / "requester.db", create=False)
    try:
        logged = [e for _, e in events(log)]
    finally:
        log.close()
    [started] = [e for e in logged if isinstance(e, job_core.JobStarted)]
    assert started.settings.whole_frames_first
    renders = [e.frames for e in logged if isinstance(e, job_core.TaskAssigned) and e.kind == "render"]
    assert any(len(units) == 2 and units[0] % 2 == 0 and units[1] == units[0] + 1 for units in renders)  # a whole frame, one task
    delivered = sorted(e.frame for e in logged if isinstance(e, job_core.CopyReceived) and e.role == "candidate")
    assert delivered == list(range(2, 10))  # every tile once, each under its own unit
    report = audit(tmp_path / "requester.db", job=job)
    assert report["jobs"][0]["tiles"] == {"cols": 2, "rows": 1, "total": 8, "final": 8}
