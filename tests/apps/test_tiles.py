"""Stills in tiles through a real farm: each frame split among friends, checked inside its tiles, stitched exactly.

Real processes and real Blender at 64x36: a stitched frame is compared with a
direct whole-frame render of the same file on decoded pixels, in its own format.
"""

from __future__ import annotations

import numpy as np
import pytest
import trio
from PIL import Image

from frender import blender
from frender.apps.client import submit
from frender.core import job as core
from test_artists import RENDERED, corpus, direct_art  # noqa: F401  (the artists' corpus and its direct renders)

pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(300)]

W, H = 64, 36


async def run(farm, blend, out, *, friends=2, tiles="2x2", notes=None, **options):
    with trio.fail_after(150):
        return await submit(
            blend, requester=farm.requester, user="artist", home=farm.root / "homes" / "artist", friends=friends, out=out,
            include_outside=True, tiles=tiles, on_note=(notes.append if notes is not None else lambda line: None), **options,
        )  # fmt: skip


async def test_a_tiled_still_equals_a_direct_render_in_png_and_multilayer_exr(farm, tiny_scene, direct, corpus, direct_art):  # noqa: F811
    """A frame in 3x2 tiles (PNG 8 with crop checks inside tiles), and in 2x2 tiles (PNG 16, multilayer EXR with
    every pass): named as Blender names it, identical to the direct render, every tile final, nobody evicted."""
    root, cases = corpus
    await farm.start(friends=3)
    result = await run(farm, tiny_scene, farm.root / "out" / "png8", friends=3, tiles="3x2", frames=(3,))
    assert result.frames == (3,) and result.progress.tiles == 6 and result.progress.tiles_final == 6
    assert result.files[0].name == "frame_0003.png"
    assert blender.compare_output(result.files[0], direct[3], blender.PNG8, width=W, height=H).verdict == "identical"
    assert not result.progress.evictions and result.progress.checks >= 6  # every tile crop-checked
    for case, frame in (("png16_list", 4), ("exr_multilayer", 2)):
        fmt = RENDERED[case][1]
        result = await run(farm, root / cases[case]["blend"], farm.root / "out" / case, frames=(frame,))
        assert result.progress.tiles == 4 and len(result.files) == 1, case
        assert result.files[0].name == cases[case]["names"][[1, 4, 5].index(frame) if case == "png16_list" else frame - 1]
        verdict = blender.compare_output(result.files[0], direct_art[case][frame], fmt, width=W, height=H).verdict
        assert verdict == "identical", case
    passes = blender.decode_output(result.files[0], RENDERED["exr_multilayer"][1], width=W, height=H)
    assert {"ViewLayer.Combined", "ViewLayer.Depth", "ViewLayer.Normal"} <= set(passes)


CLOCK = ("Date", "RenderTime", "cycles.ViewLayer.total_time", "cycles.ViewLayer.render_time", "cycles.ViewLayer.synchronization_time")


def _without_clock(data: bytes) -> bytes:
    """A JPEG with the render's clock (its date and render times, in which two whole renders differ too) blanked."""
    kept = [c.decode().removeprefix("Blender:").partition(":") for c in blender.jpeg_comments(data)]
    return blender.with_comments(data, [(key, "-" if key in CLOCK else value) for key, _, value in kept])


async def test_a_tiled_jpeg_still_equals_a_direct_render(farm, corpus, direct_art):  # noqa: F811
    """A JPEG frame in 2x2 tiles (lossless tiles, the frame encoded once by the requester's Blender): named as Blender
    names it, the direct render's pixels, and its bytes but for the render's clock."""
    root, cases = corpus
    await farm.start(friends=2)
    notes: list[str] = []
    result = await run(farm, root / cases["jpeg"]["blend"], farm.root / "out" / "jpeg", frames=(2,), notes=notes)
    assert not [n for n in notes if "not rendered in tiles" in n], notes
    assert result.progress.tiles == 4 and result.progress.tiles_final == 4 and not result.progress.evictions
    assert result.progress.checks >= 1  # its tiles checked as 8-bit PNG, honest ones agreeing
    assert [p.name for p in result.files] == [cases["jpeg"]["names"][1]]
    direct_jpeg = direct_art["jpeg"][2]
    with Image.open(result.files[0]) as tiled, Image.open(direct_jpeg) as direct_image:
        assert tiled.format == "JPEG" and np.array_equal(np.asarray(tiled), np.asarray(direct_image))
    assert _without_clock(result.files[0].read_bytes()) == _without_clock(direct_jpeg.read_bytes())


async def test_an_animation_of_long_frames_in_auto_tiles_equals_direct_renders_frame_by_frame(farm, tiny_scene, direct):
    """``--tiles auto`` on four frames and two friends, with a requester for which a frame is long past 1 ms: the
    job's tail is shared in 2x2 tiles, whole frames first (a frame's tiles rendered in turn in one Blender session);
    every frame stitched, identical to its direct render."""
    farm.requester_options = ("--long-frame", "0.001")
    await farm.start(friends=2)
    notes: list[str] = []
    result = await run(farm, tiny_scene, farm.root / "out" / "anim", tiles="auto", frames=(1, 2, 3, 4), notes=notes)
    assert result.frames == (1, 2, 3, 4) and (result.progress.tiles, result.progress.tiles_final) == (4, 16), notes
    assert not result.progress.evictions
    for path, frame in zip(result.files, (1, 2, 3, 4), strict=True):
        assert path.name == f"frame_{frame:04d}.png"
        assert blender.compare_output(path, direct[frame], blender.PNG8, width=W, height=H).verdict == "identical", frame
    assert any(  # the log: a whole frame was one task
        len(e.frames) == 4 for e in farm.events("requester") if isinstance(e, core.TaskAssigned) and e.kind == "render"
    )


async def test_a_forged_tile_is_caught_and_rendered_again(farm, tiny_scene, direct):
    """A friend forging black tiles is evicted by a crop check inside its tile; the stitched frame is still exact."""
    await farm.start(friends=3, cheats=("black",))
    result = await run(farm, tiny_scene, farm.root / "out", friends=3, tiles="4x2", frames=(5,))
    assert result.progress.evictions == (farm.friends[0],)
    assert blender.compare_output(result.files[0], direct[5], blender.PNG8, width=W, height=H).verdict == "identical"


async def test_a_file_that_cannot_be_tiled_says_why_and_renders_whole_frames(farm, corpus):  # noqa: F811
    """A compositor reading beyond a pixel: submit says why, and the frames come whole (the denoiser on is tiled:
    test_denoised_tiles.py)."""
    root, cases = corpus
    await farm.start(friends=2)
    for case, why in (("composited", "compositor"),):
        notes: list[str] = []
        result = await run(farm, root / cases[case]["blend"], farm.root / "out" / case, frames=(1,), notes=notes)
        said = [n for n in notes if "not rendered in tiles" in n]
        assert said and why in said[0], (case, notes)
        assert result.progress.tiles == 0 and result.frames == (1,)
