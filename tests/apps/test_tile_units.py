"""What a tile's work unit renders and holds (frender.apps.tiles.unit_view), and which files are never tiled."""

from __future__ import annotations

import attrs
import pytest

from frender import blender
from frender.apps import messages as msg
from frender.apps.requester_events import JobAccepted, crop_boxes
from frender.apps.tiles import Prerender, TiledFrames, parse_tiles, unit_output, unit_view, untileable
from frender.codec import converter
from frender.core import job as core
from frender.core.profile import RenderProfile

PROFILE = RenderProfile(blender_version="5.0.1", build_hash="x", device="CPU", cpu_class="c")
GRID = core.TileGrid(cols=4, rows=2, width=64, height=36)


def accepted(depth: str = "8", fmt: str = "PNG", mode: str = "RGBA") -> JobAccepted:
    return JobAccepted(job=1, submitter="a", submitter_key="k", blend_sha256="s", width=64, height=36, profile=PROFILE,
                       file_format=fmt, color_depth=depth, color_mode=mode, crop_padding=0, crop_alignment=1)  # fmt: skip


def test_a_tile_of_an_8_bit_frame_renders_its_box_in_place() -> None:
    """Tile 5 (column 1, row 1) of frame 3: Blender renders frame 3's 16x18 box at (16, 18) in place; the image is the frame's size."""
    view = unit_view(GRID, accepted(), GRID.unit(3, 5), None)
    assert view.frame == 3 and view.crop is None
    assert view.render == blender.Window(left=16, top=18, width=16, height=18, in_place=True)
    assert view.rendered_size == (64, 36)


@pytest.mark.parametrize("mode", ["RGB", "BW"])
def test_a_tile_of_a_jpeg_frame_renders_lossless_png_in_place_and_whole_frames_stay_jpeg(mode: str) -> None:
    """A JPEG frame's tile is rendered in place as 8-bit PNG in the frame's colour mode (its JPEG is encoded once, stitched);
    a JPEG job of whole frames renders and stores JPEG as before."""
    jpeg = accepted(fmt="JPEG", mode=mode)
    view = unit_view(GRID, jpeg, GRID.unit(3, 5), None)
    assert view.render == blender.Window(left=16, top=18, width=16, height=18, in_place=True, lossless=True)
    assert unit_output(jpeg, True) == blender.OutputFormat(file_format="PNG", color_depth="8", color_mode=mode)
    assert unit_output(jpeg, False) == jpeg.output and unit_view(None, jpeg, 3, None).render is None
    assert unit_view(GRID, accepted(), GRID.unit(3, 5), None).render.lossless is False  # a PNG frame's tile is its own format


def test_a_tile_of_a_16_bit_frame_is_cropped_and_its_crop_check_lies_inside_it() -> None:
    """16-bit tiles are cropped (the image is the tile); a crop check's window is placed in the tile and rendered there."""
    window = core.CropWindow(x=48, y=48, w=16, h=16)  # the tile's bottom-right sixteenth
    render = unit_view(GRID, accepted("16"), GRID.unit(3, 5), None)
    assert render.render == blender.Window(left=16, top=18, width=16, height=18) and render.rendered_size == (16, 18)
    check = unit_view(GRID, accepted("16"), GRID.unit(3, 5), window)
    box, rendered = check.crop
    assert (check.width, check.height) == (16, 18) and box == rendered
    assert box.left >= 0 and box.right == 16 and box.bottom == 18  # inside the tile, in its own pixels
    assert check.render == blender.Window(left=16 + box.left, top=18 + box.top, width=box.width, height=box.height)


def test_an_8_bit_tiles_crop_check_is_placed_in_the_frame_inside_its_tile() -> None:
    """In place, the subject's image is the frame: the crop box is in frame pixels, inside the tile, and covers 1/16 of it."""
    view = unit_view(GRID, accepted(), GRID.unit(0, 7), core.CropWindow(x=0, y=0, w=16, h=16))
    box, _ = view.crop
    assert (box.left, box.top) == (48, 18) and box.right <= 64 and box.bottom <= 36
    assert box.width * box.height >= 16 * 18 / 16
    box.check(64, 36, min_fraction=view.min_fraction)  # the comparison's floor is the tile's sixteenth


def test_whole_frames_keep_their_crop_boxes() -> None:
    """Without tiles a unit is its frame, rendered whole or over crop_boxes' window, as before tiles."""
    window = core.CropWindow(x=8, y=8, w=16, h=16)
    view = unit_view(None, accepted(), 7, window)
    assert view.frame == 7 and view.crop == crop_boxes(window, accepted()) and view.render == view.crop[1]
    assert unit_view(None, accepted(), 7, None).render is None


@pytest.mark.parametrize(("text", "grid"), [("4x4", (4, 4)), (" 2X3 ", (2, 3)), ("auto", "auto"), ("", "")])
def test_tiles_are_given_as_cols_x_rows_or_auto(text: str, grid) -> None:
    """--tiles COLSxROWS or auto; anything else, or more than 256 tiles, says how to write it."""
    assert parse_tiles(text) == grid


@pytest.mark.parametrize("text", ["4", "4x", "x4", "0x4", "17x16", "four"])
def test_bad_tiles_say_how(text: str) -> None:
    with pytest.raises(ValueError, match="tiles"):
        parse_tiles(text)


def _info(**kw) -> blender.BlendInfo:
    base = dict(saved_with="5.0.1", scene="S", frame_start=1, frame_end=1, frame_step=1, fps=24.0, resolution=(64, 36), engine="CYCLES",
                samples=4, denoiser=None, external_files=(), packed_files=(), refusals=())  # fmt: skip
    return blender.BlendInfo(**{**base, **kw})


def test_files_whose_tiles_are_not_the_frame_say_why() -> None:
    """Denoiser, compositor, EEVEE: each a reason; plain Cycles to PNG, EXR or JPEG (its tiles lossless) none."""
    png = blender.PNG8
    assert untileable(_info(), png) == ""
    assert untileable(_info(), blender.OutputFormat(file_format="OPEN_EXR_MULTILAYER", color_depth="32")) == ""
    assert untileable(_info(denoiser="OPENIMAGEDENOISE"), png) == ""  # tiled noisy, denoised once after the stitch
    assert "Glare" in untileable(_info(crop_unsafe=("Glare",)), png)
    assert "not Cycles" in untileable(_info(engine="BLENDER_EEVEE_NEXT"), png)
    assert untileable(_info(), blender.OutputFormat(file_format="JPEG", color_depth="8", color_mode="RGB")) == ""


def test_a_denoised_file_is_tiled_unless_composited_or_multilayer() -> None:
    """The denoiser on: tiled (its frame denoised after the stitch), unless the compositor changes the render or the
    frames are multilayer EXR (the denoiser's passes are not the file's); a non-pointwise compositor still says so."""
    dn = "OPENIMAGEDENOISE"
    for fmt in (blender.PNG8, blender.OutputFormat(file_format="OPEN_EXR", color_depth="16"), blender.OutputFormat(file_format="TIFF", color_depth="16")):
        assert untileable(_info(denoiser=dn), fmt) == "", fmt
    assert "compositor changes the render (Curves)" in untileable(_info(denoiser=dn, composited=("Curves",)), blender.PNG8)
    assert "multilayer" in untileable(_info(denoiser=dn), blender.OutputFormat(file_format="OPEN_EXR_MULTILAYER", color_depth="32"))
    assert "Glare" in untileable(_info(denoiser=dn, crop_unsafe=("Glare",)), blender.PNG8)


def test_a_denoised_files_tiles_are_noisy_float_exr_cropped_to_their_box() -> None:
    """A job denoised after the stitch: every unit is a noisy half-float multilayer EXR tile (cropped, not in place, even for
    an 8-bit PNG file), while its frames stay the file's own format; logs from before keep every job as it was."""
    job = attrs.evolve(accepted(), denoise_after=True)
    assert job.unit_output == blender.NOISY_TILES and job.output == blender.PNG8
    view = unit_view(GRID, job, GRID.unit(3, 5), None)
    assert view.render == blender.Window(left=16, top=18, width=16, height=18) and view.rendered_size == (16, 18)
    assert accepted().unit_output == blender.PNG8 and "denoise_after" not in converter.unstructure(accepted())
    work = msg.Work(job=1, task=1, frames=(3,), deadline=1.0, width=64, height=36)
    assert "noisy" not in converter.unstructure(work) and converter.unstructure(attrs.evolve(work, noisy=True))["noisy"] is True


class _Node(TiledFrames):
    """The parts of a requester ``TiledFrames`` reads: the folded state, accepted jobs, job folders."""

    def __init__(self, state: core.Requester, home) -> None:
        self.state, self.jobs, self.home = state, {1: accepted()}, home
        self._prerendered = {}

    def _job_dir(self, job: int):
        return self.home / str(job)


def _drawn(tiles: core.TileGrid | None, *, deliver: bool = True, **more) -> core.Requester:
    """A job of frame 1 (in ``tiles``, or whole) on two friends of two owners, its first unit handed out to friend a, delivered
    and its check drawn (``deliver``); ``more``: more of its settings."""
    state = core.Requester()
    units = tiles.units((1,)) if tiles else (1,)
    settings = core.JobSettings(tiles=tiles, max_chunk=1, adaptive=False, batch_size=1, **more)

    def do(command: type, **kw) -> list:
        events = core.decide(state, command(job=1, now=1.0, **kw))
        for e in events:
            core.evolve(state, e)
        return events

    do(core.StartJob, frames=units, settings=settings, checks_escrowed=4, entropy="9" * 32)
    do(core.AddFriends, friends=(core.GrantedFriend(friend="a", owner="o"), core.GrantedFriend(friend="b", owner="p")), entropy="0" * 32)
    task = next(e for e in do(core.AskForTask, friend="a", entropy="1" * 32) if isinstance(e, core.TaskAssigned))
    if deliver:
        do(core.DeliverFrame, friend="a", task=task.task, frame=task.frames[0], sha256="a" * 64, entropy="2" * 32)
    return state


def test_a_tiles_crop_check_is_rendered_ahead_once_drawn_and_whole_frames_never(tmp_path) -> None:
    """Once a tile's crop check is drawn the requester owes a render of its window ahead; not once the render is there,
    and never for a job of whole frames."""
    grid = core.TileGrid(cols=2, rows=1, width=64, height=36)
    node = _Node(_drawn(grid), tmp_path)
    owed = node._prerenders_owed()
    (check,) = [c for c in core.checks(node.state, 1) if c.window is not None]
    item = Prerender(job=1, frame=check.frame, window=check.window)
    assert owed == {item.key: item}
    path = node._prerender_path(1, check.frame, check.window)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"rendered")
    assert node._prerenders_owed() == {}
    assert _Node(_drawn(None), tmp_path)._prerenders_owed() == {}


def test_a_tiles_window_drawn_ahead_is_rendered_while_the_friend_renders_the_tile(tmp_path) -> None:
    """With windows drawn ahead, the window of a tile the requester will spot-check alone is owed as soon as the tile is
    handed out, before it arrives; the check drawn on delivery is that very window, so its render is already done."""
    grid = core.TileGrid(cols=2, rows=1, width=64, height=36)
    ahead = {"windows_ahead": True, "spot_alone": True, "spots_per_batch": 8}
    node = _Node(_drawn(grid, deliver=False, **ahead), tmp_path)
    ((unit, window),) = core.windows_ahead(node.state, 1).items()
    item = Prerender(job=1, frame=unit, window=window)
    assert node._prerenders_owed() == {item.key: item}
    (check,) = [c for c in core.checks(_drawn(grid, **ahead), 1) if c.window is not None]
    assert (check.frame, check.window, check.by_requester) == (unit, window, True)


async def test_a_whole_frame_whose_tiles_and_units_disagree_is_unworkable_not_a_crash(tmp_path) -> None:
    """A requester's Work naming more tiles than work units to deliver them as ends the friend's work on the job with
    a reason (Unworkable), before any Blender starts."""
    from types import SimpleNamespace

    from frender.apps.friend_work import JobRenderer, Unworkable

    box = msg.CropBox(left=0, top=0, width=8, height=8, in_place=True)
    work = msg.Work(job=1, task=1, frames=(1,), deadline=10.0, width=16, height=8, deliver_as=(2,), tiles=(box, box))
    renderer = JobRenderer(SimpleNamespace(home=tmp_path), 1)  # type: ignore[arg-type]

    async def on_frame(frame) -> None:
        raise AssertionError("nothing is rendered")

    with pytest.raises(Unworkable, match="2 tiles and 1 work units"):
        await renderer.render(work, on_frame)
    assert renderer.session is None
