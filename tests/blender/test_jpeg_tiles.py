"""A JPEG frame from lossless tiles, encoded once by Blender: a whole render's image data, byte for byte."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from frender import blender
from frender.apps.artist import check_request
from frender.core.job import TileGrid

pytestmark = pytest.mark.blender

W, H = 64, 36  # the demo scene's (conftest.TINY)
QUALITY = 77  # not Blender's default: the file's own quality must reach the encoder
SET_JPEG = """
import bpy, sys
out, mode = sys.argv[-2:]
bpy.ops.wm.open_mainfile(filepath=sys.argv[-3])
settings = bpy.context.scene.render.image_settings
settings.file_format, settings.color_mode, settings.quality = "JPEG", mode, %d
bpy.ops.wm.save_as_mainfile(filepath=out)
""" % QUALITY
TIMES = ("Date", "RenderTime", "cycles.ViewLayer.total_time", "cycles.ViewLayer.render_time", "cycles.ViewLayer.synchronization_time")


def _without_times(data: bytes) -> bytes:
    """A JPEG with the render's clock (date and render times: two whole renders differ in them too) blanked."""
    kept = []
    for comment in blender.jpeg_comments(data):
        key, _, value = comment.decode().removeprefix("Blender:").partition(":")
        kept.append((key, "-" if key in TIMES else value))
    return blender.with_comments(data, kept)


@pytest.mark.parametrize("mode", ["RGB", "BW"])
async def test_lossless_tiles_encoded_once_are_the_whole_renders_jpeg(bpy_backend, demo_scene, tmp_path, mode: str) -> None:
    """A frame rendered whole as JPEG, and in 3x2 tiles rendered in place as 8-bit PNG, stitched and encoded by Blender:
    the same decoded pixels, the same bytes once the render's clock is set aside, the file's own quality and metadata."""
    job = tmp_path / "job"
    job.mkdir()
    blend = job / "jpeg.blend"
    subprocess.run([sys.executable, "-c", SET_JPEG, "--", str(demo_scene), str(blend), mode], check=True, capture_output=True)
    grid = TileGrid(cols=3, rows=2, width=W, height=H)
    boxes = [blender.Window(left=b[0], top=b[1], width=b[2], height=b[3]) for b in map(grid.box, range(grid.count))]
    tiles = []
    async with blender.open_session(bpy_backend, blend, job) as session:
        (whole,) = await session.render([2])
        direct = shutil.copy(whole.path, tmp_path / "direct.jpg")
        for index, box in enumerate(boxes):
            (tile,) = await session.render([2], window=blender.Window(left=box.left, top=box.top, width=box.width, height=box.height,
                                                                       in_place=True, lossless=True))  # fmt: skip
            assert tile.path.suffix == ".png"
            tiles.append((box, shutil.copy(tile.path, tmp_path / f"tile-{index}.png")))
    fmt = check_request(await blender.inspect(bpy_backend, blend), (2,), allow_outside=False, allow_missing=False).output
    assert fmt == blender.OutputFormat(file_format="JPEG", color_depth="8", color_mode=mode, quality=QUALITY)  # as the job logs it
    out = tmp_path / "stitched.jpg"
    await blender.stitch_jpeg(bpy_backend, tiles, fmt, width=W, height=H, out=out)
    with Image.open(direct) as a, Image.open(out) as b:
        assert a.mode == b.mode == ("L" if mode == "BW" else "RGB")
        assert np.array_equal(np.asarray(a), np.asarray(b))
    data, expected = out.read_bytes(), direct.read_bytes()
    keys = [c.split(b":")[1] for c in blender.jpeg_comments(expected)]
    assert b"Frame" in keys and [c.split(b":")[1] for c in blender.jpeg_comments(data)] == keys
    assert _without_times(data) == _without_times(expected)
    assert list(tmp_path.glob(".stitched*")) == []  # the encoder's folder is gone
