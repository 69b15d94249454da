"""Real crop renders: an honest window agrees with its full frame, a lazy one does not, denoiser on or off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from frender.blender import (
    CROP_ALIGNMENT,
    CROP_PADDING,
    BadWindow,
    Window,
    build_demo_scene,
    compare,
    compare_window,
    inspect,
    measure_crops,
    measure_windows,
    open_session,
    render,
)

pytestmark = pytest.mark.blender
TINY = {"frames": 3, "resolution": (64, 36), "samples": 4}  # conftest.py's tiny scene
W, H = TINY["resolution"]
BOX = Window(left=40, top=20, width=16, height=9)  # 1/16 of the frame, near a corner


@pytest.fixture(scope="session")
def scenes(bpy_backend, tmp_path_factory):
    """{(denoise, lazy): blend}: the tiny demo scene, honest (4 samples) and lazy (1 sample), denoiser off and on."""
    built = {}
    for denoise in (False, True):
        for lazy in (False, True):
            samples = 1 if lazy else TINY["samples"]
            out = tmp_path_factory.mktemp("crop") / f"scene-{denoise}-{lazy}.blend"
            built[denoise, lazy] = build_demo_scene(
                out, frames=TINY["frames"], resolution=(W, H), samples=samples, denoise=denoise, backend=bpy_backend
            )
    return built


@pytest.mark.parametrize("denoise", [False, True], ids=["raw", "denoised"])
async def test_honest_crop_agrees_and_lazy_frame_disagrees(bpy_backend, scenes, tmp_path, copy_job, denoise):
    """A padded, aligned crop in 2 threads agrees with the 1-thread frame; a quarter-sample frame disagrees, whole and
    under the crop; without the denoiser even unpadded crops at the corners match the frame to Blender's dither (2/255)."""
    region = BOX.padded(CROP_PADDING, W, H, align=CROP_ALIGNMENT)
    check = {"width": W, "height": H, "pad": CROP_PADDING, "align": CROP_ALIGNMENT}
    corners = (Window(left=0, top=0, width=16, height=9), Window(left=48, top=27, width=16, height=9))
    async with open_session(bpy_backend, copy_job(scenes[denoise, False], tmp_path / "h"), tmp_path / "h", threads=1) as session:
        (full,) = await session.render([2])
        with pytest.raises(BadWindow):
            await session.render([2], window=Window(left=60, top=0, width=8, height=8))  # outside the frame
        assert session.alive
        for box in corners if not denoise else ():
            (corner,) = await session.render([2], window=box)
            result = compare_window(full.path, corner.path, box, width=W, height=H)
            assert result.max_diff <= 2 and result.verdict != "disagree"
        assert full.path.is_file()  # the crops did not overwrite the frame
    (crop,) = await render(bpy_backend, copy_job(scenes[denoise, False], tmp_path / "t"), tmp_path / "t", [2],
                           threads=2, window=region)  # fmt: skip
    assert (crop.path.name, crop.window) == ("window_0002.png", region)
    (lazy,) = await render(bpy_backend, copy_job(scenes[denoise, True], tmp_path / "l"), tmp_path / "l", [2], threads=1)
    assert compare_window(full.path, crop.path, BOX, **check).verdict != "disagree"
    assert compare(full.path, lazy.path, width=W, height=H).verdict == "disagree"
    assert compare_window(lazy.path, crop.path, BOX, **check).verdict == "disagree"


async def test_cli_session_renders_windows(cli_backend, cli_scene, tmp_path, copy_job):
    """The blender command renders windows in its session too, matching its own full frame."""
    async with open_session(cli_backend, copy_job(cli_scene, tmp_path), tmp_path, threads=1) as session:
        assert session.resolution == (W, H)
        (full,) = await session.render([1])
        (crop,) = await session.render([1], window=BOX)
    result = compare_window(full.path, crop.path, BOX, width=W, height=H)
    assert result.max_diff <= 2 and result.verdict != "disagree"


@pytest.mark.parametrize("kind", ["glare", "bright"])
async def test_a_compositor_that_reads_the_whole_image_makes_crops_unsound_and_inspection_says_so(
    bpy_backend, demo_scene, tmp_path, copy_job, kind
):
    """A Glare node draws each pixel from the whole image: a window rendered alone differs from the frame, so
    inspection names the node (the requester then checks whole frames). A pointwise node (Brightness/Contrast)
    keeps crops sound, and inspection names nothing."""
    job = tmp_path / kind
    job.mkdir()
    blend = job / "composited.blend"
    subprocess.run([sys.executable, "-E", "-P", str(Path(__file__).with_name("make_composited.py")), "--", str(demo_scene),
                    str(blend), kind], check=True, capture_output=True)  # fmt: skip
    info = await inspect(bpy_backend, blend)
    assert info.crop_unsafe == (("compositor node 'Glare' (glare)",) if kind == "glare" else ())
    box = Window(left=24, top=9, width=16, height=9)
    async with open_session(bpy_backend, blend, job, threads=1) as session:
        (full,) = await session.render([2])
        (crop,) = await session.render([2], window=box)
    verdict = compare_window(full.path, crop.path, box, width=W, height=H).verdict
    assert (verdict == "disagree") == (kind == "glare")


@pytest.mark.parametrize("kind", ["glare", "bright"])
async def test_measuring_a_files_windows_tells_crop_unsound_files_apart(bpy_backend, demo_scene, tmp_path, kind):
    """``measure_crops`` renders the frame whole and three windows of it in one session: a Glare node's windows
    differ from the frame (not equal), a pointwise node's equal it, whatever the engine or node list says."""
    job = tmp_path / kind
    job.mkdir()
    blend = job / "composited.blend"
    subprocess.run([sys.executable, "-E", "-P", str(Path(__file__).with_name("make_composited.py")), "--", str(demo_scene),
                    str(blend), kind], check=True, capture_output=True)  # fmt: skip
    measured = await measure_crops(bpy_backend, blend, job, 2, width=W, height=H, denoised=False)
    assert measured.windows == measure_windows(W, H) and len(measured.windows) == 3
    assert all(w.width * w.height * 16 >= W * H for w in measured.windows)
    assert measured.equal == (kind == "bright")
    assert (measured.worst.verdict == "disagree") == (kind == "glare")
    assert measured.frame_seconds > 0 and measured.window_seconds > 0  # timed, for deadlines and admission's pace
