"""The modelled renderer and forged frames."""

from __future__ import annotations

import itertools

import pytest
import trio

from frender.blender import (
    Limits,
    ModelledBackend,
    RenderTimeout,
    compare,
    forge_frame,
    inspect,
    modelled_frame,
    open_session,
    probe,
    render,
)

W, H = 64, 36


async def test_modelled_render_takes_its_time_and_writes_frames(autojump_clock, tmp_path):
    """Frames take seconds_per_frame each, stream in order, and are real PNGs of the job size."""
    backend = ModelledBackend(0.5, resolution=(W, H))
    seen = []

    async def on_frame(frame):
        seen.append((frame.frame, trio.current_time()))

    start = trio.current_time()
    frames = await render(backend, tmp_path / "x.blend", tmp_path, [4, 5, 6], on_frame=on_frame)
    assert [f.path.name for f in frames] == ["frame_0004.png", "frame_0005.png", "frame_0006.png"]
    assert [(f, t - start) for f, t in seen] == [(4, 0.5), (5, 1.0), (6, 1.5)]
    assert (await probe(backend)).blender_version == "modelled"
    assert (await inspect(backend, tmp_path / "x.blend")).resolution == (W, H)


async def test_modelled_render_timeout(autojump_clock, tmp_path):
    """A modelled render past its wall-clock limit raises RenderTimeout like a real one."""
    with pytest.raises(RenderTimeout):
        await render(ModelledBackend(10), tmp_path / "x.blend", tmp_path, [1, 2], limits=Limits(wall_seconds=15))


def test_modelled_frames_are_stable_and_distinct():
    """The same frame is identical every time; any two frames disagree."""
    assert modelled_frame(7, width=W, height=H) == modelled_frame(7, width=W, height=H)
    for a, b in itertools.combinations([0, 1, 2, 255, 256, 257, 1000], 2):
        result = compare(modelled_frame(a, width=W, height=H), modelled_frame(b, width=W, height=H), width=W, height=H)
        assert result.verdict == "disagree", (a, b)


@pytest.mark.parametrize("kind", ["black", "noise", "stale"])
def test_forged_frames_disagree(kind):
    """Black, noise and stale (another frame's image) all disagree with the honest frame."""
    honest = modelled_frame(3, width=W, height=H)
    forged = forge_frame(kind, width=W, height=H, other=modelled_frame(2, width=W, height=H))
    assert compare(honest, forged, width=W, height=H).verdict == "disagree"


def test_stale_frame_is_the_other_frame():
    """A stale forgery carries exactly the other frame's pixels."""
    other = modelled_frame(2, width=W, height=H)
    assert compare(forge_frame("stale", width=W, height=H, other=other), other, width=W, height=H).verdict == "identical"
    with pytest.raises(ValueError, match="other frame"):
        forge_frame("stale", width=W, height=H)


async def test_modelled_session_keeps_its_schedule(autojump_clock, tmp_path):
    """A modelled session renders batch after batch on the per-frame schedule, with no start-up cost;
    a batch past its own limit ends the session with RenderTimeout."""
    backend = ModelledBackend(0.5, resolution=(W, H))
    async with open_session(backend, tmp_path / "x.blend", tmp_path, limits=Limits(wall_seconds=100)) as session:
        start = trio.current_time()
        first = await session.render([1, 2])
        second = await session.render([2])
        assert trio.current_time() - start == 1.5
        assert [f.frame for f in first + second] == [1, 2, 2]
        assert second[0].path.read_bytes() == modelled_frame(2, width=W, height=H)
        with pytest.raises(RenderTimeout):
            await session.render([3, 4], wall_seconds=0.7)
        assert not session.alive


async def test_a_window_costs_its_measured_share_of_a_frame(autojump_clock, tmp_path):
    """A window of 1/16 of the frame takes the fixed start-up plus its area's share of a frame's time (real Blender's crop
    cost, bench/crop_cost.py), not a whole frame's."""
    from frender.blender import Window
    from frender.blender._modelled import WINDOW_STARTUP, window_seconds

    backend = ModelledBackend(1.0, resolution=(W, H))
    window = Window(left=8, top=9, width=W // 4, height=H // 4)
    start = trio.current_time()
    [done] = await render(backend, tmp_path / "x.blend", tmp_path, [3], window=window)
    took = trio.current_time() - start
    assert took == pytest.approx(WINDOW_STARTUP + (1 - WINDOW_STARTUP) / 16) == pytest.approx(window_seconds(1.0, 1 / 16))
    assert 0.07 < took < 0.09  # 7.7% measured for a 1/16 window of a 1920x1080 frame
    assert done.path.name == "window_0003.png"
