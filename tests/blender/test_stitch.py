"""Stitching places the tiles' pixels only: every format comes back as the frame it was cut from, value for value."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from frender.blender import BadStitch, OutputFormat, Window, decode_output, stitch
from frender.core.job import TileGrid

W, H = 37, 23
GRID = TileGrid(cols=3, rows=2, width=W, height=H)
BOXES = [Window(left=b[0], top=b[1], width=b[2], height=b[3]) for b in map(GRID.box, range(GRID.count))]
RNG = np.random.default_rng(7)


def _write(fmt: str, pixels: np.ndarray, path) -> None:
    if fmt in ("png8", "png8rgb"):
        Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB").save(path, "PNG")
    elif fmt == "png16":
        import png

        png.Writer(pixels.shape[1], pixels.shape[0], bitdepth=16, greyscale=False).write(open(path, "wb"), pixels.reshape(pixels.shape[0], -1))
    elif fmt == "tiff16":
        import tifffile

        tifffile.imwrite(path, pixels, photometric="rgb")
    else:
        import OpenEXR

        channels = {c: np.ascontiguousarray(pixels[..., i]) for i, c in enumerate("RGB")}
        parts = [
            OpenEXR.Part({"compression": OpenEXR.ZIP_COMPRESSION}, {f"View.{p}.{c}": v for c, v in channels.items()}, f"View.{p}")
            for p in ("Combined", "Normal")
        ]
        with OpenEXR.File(parts) as exr:
            exr.write(str(path))


FORMATS = {
    "png8": (OutputFormat(file_format="PNG", color_depth="8", color_mode="RGBA"), np.uint8, 4),
    "png8rgb": (OutputFormat(file_format="PNG", color_depth="8", color_mode="RGB"), np.uint8, 3),
    "png16": (OutputFormat(file_format="PNG", color_depth="16", color_mode="RGB"), np.uint16, 3),
    "tiff16": (OutputFormat(file_format="TIFF", color_depth="16", color_mode="RGB"), np.uint16, 3),
    "exr_multilayer_half": (OutputFormat(file_format="OPEN_EXR_MULTILAYER", color_depth="16", color_mode="RGB"), np.float16, 3),
    "exr_multilayer_float": (OutputFormat(file_format="OPEN_EXR_MULTILAYER", color_depth="32", color_mode="RGB"), np.float32, 3),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("in_place", [False, True], ids=["cropped", "in-place"])
def test_a_frame_cut_into_tiles_stitches_back_value_for_value(tmp_path, name: str, in_place: bool) -> None:
    """Tiles cut from a frame (cropped, or frame-sized with only their box: in place) stitch into that exact frame,
    every part and channel of a multilayer EXR in its own pixel type."""
    fmt, dtype, channels = FORMATS[name]
    if np.issubdtype(dtype, np.integer):
        frame = RNG.integers(0, np.iinfo(dtype).max, (H, W, channels), dtype=dtype)
    else:
        frame = RNG.normal(size=(H, W, channels)).astype(dtype)
    whole = tmp_path / f"whole{fmt.extension}"
    _write(name, frame, whole)
    tiles = []
    for i, box in enumerate(BOXES):
        cut = np.zeros_like(frame) if in_place else box.of(frame).copy()
        if in_place:
            cut[box.top : box.bottom, box.left : box.right] = box.of(frame)
        path = tmp_path / f"tile{i}{fmt.extension}"
        _write(name, np.ascontiguousarray(cut), path)
        tiles.append((box, path))
    out = stitch(tiles, fmt, width=W, height=H, out=tmp_path / f"stitched{fmt.extension}")
    a, b = decode_output(out, fmt, width=W, height=H), decode_output(whole, fmt, width=W, height=H)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), (key, np.argwhere(a[key] != b[key])[:3])
    if name.startswith("exr"):
        import OpenEXR

        with OpenEXR.File(str(out), separate_channels=True) as exr:
            assert [p.name() for p in exr.parts] == ["View.Combined", "View.Normal"]
            assert exr.parts[0].channels["View.Combined.R"].pixels.dtype == dtype


def test_tiles_that_leave_a_gap_or_overlap_are_refused(tmp_path) -> None:
    """Tiles that do not cover the frame exactly once, or JPEG frames, are BadStitch, and nothing is written."""
    fmt = FORMATS["png8"][0]
    paths = []
    for i, box in enumerate(BOXES):
        path = tmp_path / f"t{i}.png"
        Image.fromarray(np.zeros((box.height, box.width, 4), np.uint8), "RGBA").save(path)
        paths.append((box, path))
    with pytest.raises(BadStitch, match="exactly once"):
        stitch(paths[:-1], fmt, width=W, height=H, out=tmp_path / "out.png")
    with pytest.raises(BadStitch, match="exactly once"):
        stitch([*paths, paths[0]], fmt, width=W, height=H, out=tmp_path / "out.png")
    with pytest.raises(BadStitch, match="JPEG"):
        stitch(paths, OutputFormat(file_format="JPEG", color_depth="8", color_mode="RGB"), width=W, height=H, out=tmp_path / "out.jpg")
    assert not (tmp_path / "out.png").exists() and not list(tmp_path.glob(".*"))
