"""Windows of a frame: bounds, padding, and comparing a crop with the same pixels of a full frame."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trio
from PIL import Image

from frender.blender import BadImage, BadWindow, ModelledBackend, Window, compare_window, decode_png, modelled_frame
from frender.blender._output import Ready, parse_line

W, H = 64, 36


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


def frame() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (H, W, 4), dtype=np.uint8)


@pytest.mark.parametrize(
    ("window", "error"),
    [
        (Window(left=0, top=0, width=16, height=9), None),  # exactly 1/16 of 64x36
        (Window(left=48, top=27, width=16, height=9), None),  # the bottom-right corner
        (Window(left=0, top=0, width=W, height=H), None),
        (Window(left=0, top=0, width=15, height=9), "less than 0.0625"),
        (Window(left=49, top=0, width=16, height=9), "not inside"),
        (Window(left=0, top=28, width=16, height=9), "not inside"),
        (Window(left=-1, top=0, width=16, height=9), "not inside"),
        (Window(left=0, top=0, width=0, height=9), "empty"),
        (Window(left=0, top=0, width=16, height=-9), "empty"),
    ],
)
def test_window_bounds(window, error):
    """A window inside the frame covering at least 1/16 of it passes; any other raises BadWindow saying why."""
    if error is None:
        window.check(W, H)
    else:
        with pytest.raises(BadWindow, match=error):
            window.check(W, H)


@pytest.mark.parametrize(
    ("window", "pad", "expected"),
    [
        (Window(left=20, top=10, width=16, height=9), 4, Window(left=16, top=6, width=24, height=17)),
        (Window(left=0, top=0, width=16, height=9), 8, Window(left=0, top=0, width=24, height=17)),
        (Window(left=48, top=27, width=16, height=9), 8, Window(left=40, top=19, width=24, height=17)),
        (Window(left=10, top=10, width=16, height=9), 0, Window(left=10, top=10, width=16, height=9)),
        (Window(left=0, top=0, width=W, height=H), 16, Window(left=0, top=0, width=W, height=H)),
    ],
)
def test_padding_is_clipped_to_the_frame(window, pad, expected):
    """Padding grows a window on every side, never past the frame's edges."""
    assert window.padded(pad, W, H) == expected


def test_negative_padding_refused():
    """Negative padding is BadWindow."""
    with pytest.raises(BadWindow, match="negative"):
        Window(left=0, top=0, width=16, height=9).padded(-1, W, H)


def test_padded_crop_is_compared_in_its_centre_only():
    """A padded crop whose padding is garbage but whose centre is the frame's pixels is identical."""
    full = frame()
    box = Window(left=20, top=10, width=16, height=9)
    region = box.padded(6, W, H)
    crop = region.of(full).copy()
    crop[:3] = 0  # the padding ring is not compared
    crop[:, :2] = 255
    result = compare_window(png(full), png(crop), box, width=W, height=H, pad=6)
    assert (result.verdict, result.max_diff) == ("identical", 0)


def test_crop_of_another_place_disagrees():
    """A crop of the right size taken from elsewhere in the frame disagrees."""
    full = frame()
    box = Window(left=20, top=10, width=16, height=9)
    elsewhere = Window(left=40, top=20, width=16, height=9).of(full).copy()
    assert compare_window(png(full), png(elsewhere), box, width=W, height=H).verdict == "disagree"


def test_window_image_of_the_wrong_size_is_a_fault():
    """A window image of another size than the padded window is BadImage, said to be the window's."""
    full = frame()
    box = Window(left=20, top=10, width=16, height=9)
    with pytest.raises(BadImage, match="window image: PNG is 16x9, the job is 24x17"):
        compare_window(png(full), png(box.of(full).copy()), box, width=W, height=H, pad=4)


def test_box_outside_the_frame_is_the_callers_error():
    """compare_window refuses a box outside the frame or too small before decoding anything."""
    with pytest.raises(BadWindow, match="not inside"):
        compare_window(b"", b"", Window(left=60, top=0, width=16, height=9), width=W, height=H)
    with pytest.raises(BadWindow, match="less than"):
        compare_window(b"", b"", Window(left=0, top=0, width=4, height=4), width=W, height=H)


def test_ready_line_carries_the_frame_size():
    """A session's READY line gives the frame size; a bare or garbled one gives none."""
    assert parse_line('FRENDER-n READY {"resolution": [480, 270]}', "n") == Ready((480, 270))
    assert parse_line("FRENDER-n READY", "n") == Ready()
    assert parse_line('FRENDER-n READY {"size": 1}', "n") is None


async def test_modelled_backend_renders_windows(tmp_path):
    """The modelled renderer's window is the same pixels as its frame, in window_####.png; a bad window raises."""
    backend = ModelledBackend(0.0, resolution=(W, H))
    box = Window(left=8, top=4, width=20, height=12)
    session = await backend.start_session(tmp_path / "x.blend", tmp_path)
    (done,) = await session.render([5], window=box)
    assert (done.path.name, done.window) == ("window_0005.png", box)
    whole = decode_png(modelled_frame(5, width=W, height=H), width=W, height=H)
    assert np.array_equal(decode_png(done.path, width=20, height=12), box.of(whole))
    with pytest.raises(BadWindow):
        await session.render([5], window=Window(left=60, top=0, width=20, height=12))
    assert session.alive  # a refused window ends nothing
    with trio.fail_after(5):
        (again,) = await session.render([5])
    assert again.path.name == "frame_0005.png" and again.window is None


@pytest.mark.parametrize(
    ("window", "pad", "frame", "expected"),
    [
        # 480x270: rows from the bottom edge are aligned, so the top edge moves to 270 - 240 = 30.
        (Window(left=221, top=50, width=120, height=68), 16, (480, 270), Window(left=192, top=30, width=176, height=112)),
        (Window(left=0, top=0, width=120, height=68), 16, (480, 270), Window(left=0, top=0, width=144, height=94)),
        (Window(left=360, top=202, width=120, height=68), 16, (480, 270), Window(left=336, top=174, width=144, height=96)),
        (Window(left=30, top=7, width=16, height=9), 8, (64, 36), Window(left=16, top=0, width=48, height=36)),
    ],
)
def test_aligned_padding_lies_on_the_grid_from_the_bottom_left(window, pad, frame, expected):
    """Aligned padding pushes each edge out to the 16-pixel grid counted from the bottom-left corner, within the frame."""
    width, height = frame
    region = window.padded(pad, width, height, align=16)
    assert region == expected
    assert region.left % 16 == 0 and (height - region.bottom) % 16 == 0
    assert region.right % 16 == 0 or region.right == width
    assert (height - region.top) % 16 == 0 or region.top == 0


def test_aligned_crop_is_compared_in_its_centre():
    """compare_window finds the box inside an aligned, padded window image."""
    full = frame()
    box = Window(left=30, top=7, width=16, height=9)
    region = box.padded(8, W, H, align=16)
    result = compare_window(png(full), png(region.of(full).copy()), box, width=W, height=H, pad=8, align=16)
    assert result.verdict == "identical"
