"""Tiles in the requester's core (Rule 20): work units of one frame, scheduled, checked and paid like frames."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frender import codec
from frender.core import job as J
from frender.core._decider import Rejected
from frender.core.job._draws import check_verifier
from test_job_crop import play as crop_play
from test_job_schedule import Run, ask_ahead, image, of  # the hand-driven job (pytest puts tests/core on sys.path)

GRID = J.TileGrid(cols=4, rows=4, width=1920, height=1080)

def tiled_run(grid=GRID, frames=(1,), friends=None, **settings) -> Run:
    friends = friends or {"a": "o-a", "b": "o-b", "c": "o-c", "d": "o-d"}
    units = grid.units(tuple(frames))
    settings = {"crop_checks": True, "random_order": True, "max_chunk": 1, "batch_size": 2, "tiles": grid, **settings}
    run = Run(frames=units, friends=(), escrow=J.JobSettings(**settings).checks_to_escrow(len(units), len(friends)), **settings)
    run.do(J.AddFriends, friends=tuple(J.GrantedFriend(friend=f, owner=o) for f, o in friends.items()))
    return run


def play(run: Run, cheats: dict[str, str] | None = None, rounds: int = 2000, deliver: bool = True) -> list[object]:
    """The crop tests' friends pulling in turn (``test_job_crop.play``), for as many rounds as a still's tiles take."""
    return crop_play(run, cheats, rounds, deliver)


def test_units_name_their_frame_and_tile_and_tiles_cover_the_frame_exactly() -> None:
    """Each unit maps back to its frame and tile, and a frame's tile boxes cover every pixel once."""
    grid = J.TileGrid(cols=3, rows=7, width=101, height=53)
    units = grid.units((0, 5, 9))
    assert [(grid.frame_of(u), grid.tile_of(u)) for u in units] == [(f, t) for f in (0, 5, 9) for t in range(21)]
    covered = [[0] * grid.width for _ in range(grid.height)]
    for t in range(grid.count):
        left, top, w, h = grid.box(t)
        for y in range(top, top + h):
            for x in range(left, left + w):
                covered[y][x] += 1
    assert all(c == 1 for row in covered for c in row)


@given(st.integers(1, 16), st.integers(1, 16), st.integers(16, 4000), st.integers(16, 3000))
def test_tile_points_are_integers_by_area_and_add_up_to_one_per_unit(cols: int, rows: int, width: int, height: int) -> None:
    """Each tile's share rounds its exact area share (count x area / frame) up or down, and the shares sum to count."""
    grid = J.TileGrid(cols=cols, rows=rows, width=width, height=height)
    points = grid.points()
    assert sum(points) == grid.count
    for t, p in enumerate(points):
        _, _, w, h = grid.box(t)
        exact = grid.count * w * h / (width * height)
        assert int(exact) <= p <= int(exact) + 1


def test_uneven_tiles_are_paid_by_area() -> None:
    """Two tiles of 1 and 3 columns share a frame's 2 points 0 and 2 (largest remainder), never 1 and 1."""
    grid = J.TileGrid(cols=2, rows=1, width=3, height=1)
    assert grid.box(0)[2] == 1 and grid.box(1)[2] == 2
    assert J.TileGrid(cols=2, rows=1, width=5, height=1).points() == (1, 1)  # 2/5 and 3/5 of 2: 0.8 and 1.2
    assert J.TileGrid(cols=4, rows=1, width=7, height=1).points() == (1, 1, 1, 1)
    assert J.TileGrid(cols=3, rows=1, width=10, height=1).points() == (1, 1, 1)
    assert J.TileGrid(cols=3, rows=1, width=4, height=1).points() == (1, 1, 1)
    assert J.TileGrid(cols=2, rows=1, width=9, height=1).points() == (1, 1)


def test_a_tiled_still_finishes_every_tile_final_and_the_report_conserves_the_escrow() -> None:
    """All 16 tiles of one frame become final, each task holds one tile, and the report pays exactly 16 frame points."""
    run = tiled_run()
    events = play(run)
    assert run.finished
    assert all(len(t.frames) == 1 for t in of(events, J.TaskAssigned))
    finals = sorted(ff.frame for e in of(events, J.FramesFinal) for ff in e.frames)
    assert finals == list(GRID.units((1,)))
    report = of(events, J.JobFinished)[0].report
    assert sum(report.frame_points.values()) == GRID.count
    assert sum(report.payouts.values()) <= report.escrow


def test_tiles_of_one_frame_go_to_friends_of_different_owners() -> None:
    """With four owners and four tiles of a frame, each owner renders one tile (none takes two while another has none)."""
    grid = J.TileGrid(cols=2, rows=2, width=64, height=64)
    run = tiled_run(grid=grid, frames=(3,))
    events = play(run, rounds=4, deliver=False)
    renders = [t for t in of(events, J.TaskAssigned) if t.kind == "render"]
    assert len(renders) == 4
    assert sorted(run.job.friends[t.friend].owner for t in renders) == ["o-a", "o-b", "o-c", "o-d"]
    assert sorted(t.frames[0] for t in renders) == list(grid.units((3,)))


def test_one_owners_two_friends_get_tiles_of_different_frames_first() -> None:
    """Two friends of one owner on a job of two stills take tiles of different frames, as long as the job allows."""
    grid = J.TileGrid(cols=2, rows=1, width=64, height=64)
    run = tiled_run(grid=grid, frames=(1, 2), friends={"a": "o", "b": "o", "c": "p", "d": "p"})
    events = play(run, rounds=4, deliver=False)
    by_owner: dict[str, list[int]] = {}
    for t in of(events, J.TaskAssigned):
        by_owner.setdefault(run.job.friends[t.friend].owner, []).append(grid.frame_of(t.frames[0]))
    assert sorted(by_owner["o"]) == [1, 2] and sorted(by_owner["p"]) == [1, 2]


def test_a_forged_tile_is_caught_and_rendered_again_by_an_honest_friend() -> None:
    """A friend delivering black tiles is evicted, and every final tile is the honest image of its unit."""
    run = tiled_run()
    events = play(run, cheats={"b": "black"})
    assert run.finished
    assert {e.friend for e in of(events, J.CheaterEvicted)} == {"b"}
    finals = {u: J.final_copy(run.state, 1, u) for u in J.summary(run.state, 1).final}
    assert sorted(finals) == list(GRID.units((1,)))
    assert all(ff.sha256 == image(ff.frame) and ff.friend != "b" for ff in finals.values())
    report = of(events, J.JobFinished)[0].report
    assert "b" not in report.payouts and sum(report.frame_points.values()) == GRID.count


def test_an_animation_in_tiles_hands_out_whole_frames_then_shares_its_tail_in_tiles() -> None:
    """With ``whole_frames_first``, a task is every tile of one frame while half a fair share of the queue is a frame
    or more, and one tile after; every unit becomes final once, and the report pays each frame's tiles."""
    grid = J.TileGrid(cols=2, rows=2, width=64, height=64)
    frames = tuple(range(1, 13))
    run = tiled_run(grid=grid, frames=frames, whole_frames_first=True, batch_size=8)
    events = play(run)
    assert run.finished
    renders = [t for t in of(events, J.TaskAssigned) if t.kind == "render"]
    whole = [t for t in renders if len(t.frames) > 1]
    assert whole and all(t.frames == grid.units((grid.frame_of(t.frames[0]),)) for t in whole)  # every tile of one frame
    singles = [t for t in renders if len(t.frames) == 1]
    assert singles and renders.index(singles[0]) > renders.index(whole[0])  # the tail is shared out in tiles
    # The tail only: tiles once half a fair share of the queue is less than a frame, fewer than two frames a friend.
    assert len({grid.frame_of(t.frames[0]) for t in singles}) < 2 * len(run.job.friends) < len(frames)
    finals = sorted(ff.frame for e in of(events, J.FramesFinal) for ff in e.frames)
    assert finals == list(grid.units(frames))
    report = of(events, J.JobFinished)[0].report
    assert sum(report.frame_points.values()) == grid.count * len(frames)


def test_a_friend_asking_ahead_gets_a_whole_frame_only_within_half_a_fair_share() -> None:
    """Six frames in 2x1 tiles on four friends (12 units, half a fair share 2): the first ask gets a whole frame, the
    same friend asking ahead a single tile (a second frame would leave it the tail); on a long job, whole frames again."""
    grid = J.TileGrid(cols=2, rows=1, width=64, height=64)
    run = tiled_run(grid=grid, frames=tuple(range(1, 7)), whole_frames_first=True, batch_size=8)
    first = run.ask("a")
    assert first is not None and len(first.frames) == 2
    _, ahead = ask_ahead(run, "a", first.task)
    assert ahead is not None and len(ahead.frames) == 1
    run = tiled_run(grid=grid, frames=tuple(range(1, 41)), whole_frames_first=True, batch_size=8)
    first = run.ask("a")
    assert first is not None
    _, ahead = ask_ahead(run, "a", first.task)
    assert ahead is not None and len(first.frames) == len(ahead.frames) == 2


def test_whole_frames_never_go_to_a_friend_that_lost_a_tile_of_them_and_need_tiles() -> None:
    """Rule 3 holds for whole frames (a frame a friend lost a tile of is not handed back to it whole), and
    ``whole_frames_first`` without tiles is refused."""
    grid = J.TileGrid(cols=2, rows=1, width=64, height=64)
    run = tiled_run(grid=grid, frames=tuple(range(1, 9)), friends={"a": "o-a", "b": "o-b"}, whole_frames_first=True)
    first = run.ask("a")
    assert first is not None and len(first.frames) == 2
    run.do(J.ReturnTask, friend="a", task=first.task)
    second = run.ask("a")
    assert second is not None and len(second.frames) == 2 and set(second.frames).isdisjoint(first.frames)
    with pytest.raises(Rejected, match="whole_frames_first"):
        Run(frames=(1, 2), friends=(), whole_frames_first=True)


def test_a_tiled_job_refuses_tasks_of_several_tiles_and_units_that_are_not_whole_frames() -> None:
    """max_chunk above 1, or units missing a tile of their frame, are refused when the job starts."""
    with pytest.raises(Rejected, match="max_chunk"):
        Run(frames=GRID.units((1,)), friends=(), tiles=GRID, max_chunk=2)
    with pytest.raises(Rejected, match="every tile"):
        Run(frames=GRID.units((1,))[:-1], friends=(), tiles=GRID, max_chunk=1)


def test_settings_without_tiles_encode_as_before_and_tiles_round_trip() -> None:
    """An untiled job's settings body holds no tiles key (old logs re-encode byte for byte); a grid round-trips."""
    started = J.JobStarted(job=1, frames=(1,), settings=J.JobSettings(), checks_escrowed=1, adaptive=False, now=0.0)
    assert "tiles" not in codec.to_json(started)
    tiled = J.JobStarted(job=1, frames=GRID.units((1,)), settings=J.JobSettings(tiles=GRID, max_chunk=1), checks_escrowed=1, adaptive=False, now=0.0)
    assert codec.from_json(tiled.tag, codec.to_json(tiled)) == tiled


def test_auto_grid_splits_only_when_friends_outnumber_frames() -> None:
    """--tiles auto: no tiles with frames >= friends; otherwise at least two tiles per friend over the frames."""
    assert J.auto_grid(10, 8, 1920, 1080) is None
    grid = J.auto_grid(1, 8, 1920, 1080)
    assert grid is not None and grid.count >= 16 and not grid.problems()
    grid = J.auto_grid(3, 8, 640, 480)
    assert grid is not None and 3 * grid.count >= 16


def test_auto_grid_shares_the_tail_of_a_short_animation_of_long_frames() -> None:
    """--tiles auto with frames >= friends: 2x2 tiles (whole frames first) when a measured frame takes LONG_FRAME_SECONDS
    or more and the job has fewer than TAIL_FRAMES_PER_FRIEND frames a friend; none for short frames, long jobs, or
    when nothing was measured."""
    long = J.LONG_FRAME_SECONDS
    grid = J.auto_grid(12, 8, 1920, 1080, long)
    assert grid is not None and (grid.cols, grid.rows) == (2, 2) and not grid.problems()
    assert J.auto_grid(12, 8, 1920, 1080, long - 1) is None
    assert J.auto_grid(12, 8, 1920, 1080) is None  # not measured
    assert J.auto_grid(8 * J.TAIL_FRAMES_PER_FRIEND, 8, 1920, 1080, 10 * long) is None  # the tail is a small part
    assert J.auto_grid(8 * J.TAIL_FRAMES_PER_FRIEND - 1, 8, 1920, 1080, long) is not None


AHEAD = {"windows_ahead": True, "spot_alone": True, "spots_per_batch": 8}


def test_the_requesters_spot_windows_are_drawn_ahead_while_the_tiles_render() -> None:
    """With windows drawn ahead, every tile handed out to a friend whose batch will be spotted has its window known
    before it arrives, and the check drawn on delivery, rendered by the requester alone, is that very window."""
    grid = J.TileGrid(cols=4, rows=2, width=1920, height=1080)
    run = tiled_run(grid=grid, **AHEAD)
    handed = play(run, rounds=4, deliver=False)
    ahead = J.windows_ahead(run.state, 1)
    assert sorted(ahead) == sorted(t.frames[0] for t in of(handed, J.TaskAssigned))
    events = handed + play(run)
    assert run.finished
    crops = [c for c in J.checks(run.state, 1) if c.window is not None]
    assert len(crops) >= grid.count and all(c.by_requester for c in crops)
    early = [c for c in crops if c.frame in ahead]
    assert early and all(c.window == ahead[c.frame] for c in early)
    assert len({c.window for c in crops}) > 1  # drawn per tile, not one window for all
    assert of(events, J.JobFinished)


def test_a_window_a_friend_renders_is_never_drawn_ahead() -> None:
    """Spots rendered by a peer too (spot_alone off): nothing is drawn ahead, and the job decides exactly as without the
    setting (the same windows and checkers), so a friend never renders a window known before the tile arrived."""
    grid = J.TileGrid(cols=2, rows=2, width=64, height=64)
    runs = [tiled_run(grid=grid, windows_ahead=on, spot_alone=False) for on in (True, False)]
    handed = [play(r, rounds=2, deliver=False) for r in runs]
    assert J.windows_ahead(runs[0].state, 1) == {}
    rest = [play(r) for r in runs]
    drawn = [[e for e in h + r if isinstance(e, (J.ChecksDrawn, J.TaskAssigned))] for h, r in zip(handed, rest)]
    assert drawn[0] == drawn[1] and any(isinstance(e, J.ChecksDrawn) and e.windows for e in drawn[0])


def test_windows_ahead_need_a_seed_and_old_jobs_encode_as_before() -> None:
    """A job drawing windows ahead is refused without the command's entropy (its secret seed); a job without them logs
    neither the setting nor a seed, so its body is byte for byte what it was."""
    with pytest.raises(Rejected, match="entropy"):
        J.decide(J.Requester(), J.StartJob(job=1, frames=GRID.units((1,)), settings=J.JobSettings(tiles=GRID, max_chunk=1, windows_ahead=True), now=0.0))
    (started,) = J.decide(J.Requester(), J.StartJob(job=1, frames=(1,), now=0.0, entropy="e" * 32))
    assert "seed" not in codec.to_json(started) and "windows_ahead" not in codec.to_json(started)
    settings = J.JobSettings(tiles=GRID, max_chunk=1, windows_ahead=True)
    (ahead,) = J.decide(J.Requester(), J.StartJob(job=1, frames=GRID.units((1,)), settings=settings, now=0.0, entropy="e" * 32))
    assert ahead.seed == "e" * 32 and codec.from_json(ahead.tag, codec.to_json(ahead)) == ahead


class _SaltedRun(Run):
    """A hand-driven job whose commands' entropy starts with ``salt``: another run of draws for each salt."""

    def __init__(self, salt: int, **kw) -> None:
        self.salt = salt
        super().__init__(**kw)

    def do(self, command: type, **kw) -> list[object]:
        kw.setdefault("entropy", f"{self.salt:08x}{self.n + 1:024x}")
        return super().do(command, **kw)


# Trusted friends never spotted: every crop check goes to a peer the draw picks.
PEERS_ONLY = {"spot_first": False, "spot_floor": 0.0, "spot_scale": 0.0, "spot_trust_scale": 0.0, "spot_all_below": 0}


def _checks_owed_after_every_tile_arrives(salt: int, **settings) -> dict[str, int]:
    """A 4x2 still on 8 trusted friends of 8 owners, every tile delivered before any friend asks again: checks per checker."""
    grid = J.TileGrid(cols=4, rows=2, width=1920, height=1080)
    run = _SaltedRun(salt, frames=grid.units((1,)), friends=(), escrow=4, crop_checks=True, random_order=True, max_chunk=1, tiles=grid,
                     **PEERS_ONLY, **settings)
    names = [f"f{i}" for i in range(8)]
    run.do(J.AddFriends, friends=tuple(J.GrantedFriend(friend=f, owner="o-" + f, reputation=100) for f in names))
    tasks = [run.ask(f) for f in names]
    for task in tasks:
        assert task is not None
        run.deliver(task)
    pending = [run.job.checks.by_number[c] for c in run.job.checks.pending]
    assert len(pending) == grid.count and not any(c.by_requester for c in pending)
    load: dict[str, int] = {}
    for c in pending:
        verifier = check_verifier(run.job, c)
        assert verifier is not None and verifier != c.subject
        assert run.job.friends[verifier].owner != run.job.friends[c.subject].owner
        load[verifier] = load.get(verifier, 0) + 1
    return load


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_even_checkers_spread_a_stills_checks_over_its_friends(salt: int) -> None:
    """With even_checkers, the 8 checks of a still's 8 tiles (7 eligible checkers each: never the author, never its
    owner's friend) go to its friends evenly, at most ceil(8 / 7) = 2 each, whatever the draws; the random draw of
    jobs before it put 3 or more on one friend for most draws (that friend finished the still last)."""
    load = _checks_owed_after_every_tile_arrives(salt, even_checkers=True)
    assert max(load.values()) <= math.ceil(8 / 7)


def test_the_random_draw_stays_the_rule_of_jobs_without_even_checkers() -> None:
    """Without the setting (every job logged before it) a check's checker is the one its random draw picks, as before."""
    loads = [_checks_owed_after_every_tile_arrives(salt) for salt in range(20)]
    assert any(max(load.values()) > math.ceil(8 / 7) for load in loads)
