"""Artists' real files through a real farm: their output formats, names, frames, and what is refused.

The corpus is built at test time with bpy (make_art.py: 64x36, 4 samples);
each frame that comes back is compared with a direct render of the same file in
its own format, on decoded pixels.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trio

from frender import blender
from frender.apps import artist, pack
from frender.apps import messages as msg
from frender.apps.client import SubmitRefused, submit
from frender.core import job as core
from frender.transports import FileHeader, Identity, RemoteError, connect, file_header, put_file

HERE = Path(__file__).parent
SIZE = (64, 36)

pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(300)]

# case -> (frames asked, the format frames come back in)
RENDERED = {
    "exr_multilayer": ((), blender.OutputFormat(file_format="OPEN_EXR_MULTILAYER", color_depth="32", color_mode="RGBA")),
    "exr_half_step": ((), blender.OutputFormat(file_format="OPEN_EXR", color_depth="16", color_mode="RGBA")),
    "jpeg": ((), blender.OutputFormat(file_format="JPEG", color_depth="8", color_mode="RGB")),
    "png16_list": ((1, 4, 5), blender.OutputFormat(file_format="PNG", color_depth="16", color_mode="RGB")),
    "denoised": ((), blender.PNG8),  # crop checks padded and aligned for the denoiser: honest crops agree
    "composited": ((), blender.PNG8),  # a compositor glare: checked on whole frames, no honest friend evicted
    "deps": ((), blender.PNG8),  # textures beside and outside its folder, a sequence, a font, a library chain, a cache
}
# What packing the "deps" shot puts in its job tree (besides the sibling texture, under _outside_project/).
DEPS_TREE = {
    "scene.blend", "textures/wood.png", "seq/pic_0001.png", "seq/pic_0002.png", "seq/pic_0003.png", "fonts/inter.woff2", "libs/lib.blend", "libs/lib2.blend",
    "cache/cone.abc",
}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    """(root, cases): the artists' files of make_art.py, built once with bpy."""
    root = tmp_path_factory.mktemp("art")
    subprocess.run([sys.executable, "-E", "-P", str(HERE / "make_art.py"), "--", str(root)], check=True, capture_output=True)
    return root, json.loads((root / "cases.json").read_text())


@pytest.fixture(scope="session")
def direct_art(corpus, tmp_path_factory) -> dict[str, dict[int, Path]]:
    """Each rendered case's frames, rendered directly by the same Blender in one process per file."""
    root, cases = corpus
    backend = blender.find_backend()
    rendered: dict[str, dict[int, Path]] = {}
    for case, (frames, _) in RENDERED.items():
        if case == "deps":  # rendered in place: its job directory holds the sibling folder too
            work, blend = root / "deps", root / cases[case]["blend"]
        else:
            work = tmp_path_factory.mktemp(f"direct-{case}")
            blend = Path(shutil.copy(root / cases[case]["blend"], work / "job.blend"))
        info = trio.run(lambda: blender.inspect(backend, blend, job_dir=work))
        assert not info.missing and not info.refusals, (case, info.missing, info.refusals)
        wanted = frames or tuple(range(info.frame_start, info.frame_end + 1, info.frame_step))
        done = trio.run(lambda: blender.render(backend, blend, work, wanted))
        rendered[case] = {r.frame: r.path for r in done}
    return rendered


async def run(farm, blend: Path, out: Path, seconds: float = 120, **options):
    with trio.fail_after(seconds):
        return await submit(
            blend, requester=farm.requester, user="artist", home=farm.root / "homes" / "artist", friends=2, out=out, include_outside=True, **options
        )  # the artist agrees to send files from outside the .blend's folder (the deps shot's sibling texture)


async def test_each_format_comes_back_as_the_file_says_and_matches_a_direct_render(farm, corpus, direct_art):
    """EXR multilayer/half, JPEG, PNG 16 with a step and a list: the file's own format, names and frames, identical pixels."""
    root, cases = corpus
    await farm.start(friends=2)
    for case, (frames, fmt) in RENDERED.items():
        result = await run(farm, root / cases[case]["blend"], farm.root / "out" / case, frames=frames)
        assert result.frames == tuple(sorted(direct_art[case])), case
        assert [p.name for p in result.files] == cases[case]["names"], case
        for frame, path in zip(result.frames, result.files):
            assert blender.output_size(path, fmt) == SIZE
            verdict = blender.compare_output(path, direct_art[case][frame], fmt, width=SIZE[0], height=SIZE[1]).verdict
            assert verdict == "identical", (case, frame)
        assert not result.progress.evictions and not result.progress.disagreements, (case, result.progress.evictions)
    pixels = np.stack([blender.decode_output(p, blender.PNG8, width=64, height=36)[""] for p in direct_art["deps"].values()]).astype(int)
    magenta = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] > 200)
    assert not magenta.any(), "a texture of the deps shot rendered as missing"
    multilayer = blender.decode_output(result.out.parent / "exr_multilayer" / "shot_0002.exr", RENDERED["exr_multilayer"][1], width=64, height=36)
    assert {"ViewLayer.Combined", "ViewLayer.Depth", "ViewLayer.Normal"} <= set(multilayer)
    assert multilayer["ViewLayer.Combined"].dtype == np.float32


def test_packing_lists_the_tree_and_missing_files(corpus):
    """A shot's job tree holds each dependency once, relative inside it; missing ones are named with their user."""
    root, cases = corpus
    packed = pack.pack(root / cases["deps"]["blend"], include_outside=True)
    try:
        paths = {f.path for f in packed.manifest.files}
        assert paths - DEPS_TREE == {"_outside_project/1/stone.png"} and packed.manifest.main == "scene.blend"
        assert not packed.missing and pack.read_manifest(packed.manifest.encode()) == packed.manifest
    finally:
        shutil.rmtree(packed.root)
    missing = [("missing_texture", "//textures/wood.png", "image 'wood'"), ("missing_library", "//gone_lib.blend", "library 'gone_lib.blend'")]
    for case, written, user in missing:
        packed = pack.pack(root / cases[case]["blend"])
        shutil.rmtree(packed.root)
        assert [(d.written, d.used_by.split(" in ")[0]) for d in packed.missing] == [(written, user)]


async def test_missing_files_videos_file_outputs_and_frames_outside_are_refused_by_name(farm, corpus):
    """Missing texture or library (named, with its user, at submit and at inspection), a video output,
    a library with a File Output node, frames outside the range: clear refusals, no job."""
    root, cases = corpus
    await farm.start(friends=1)
    out = farm.root / "out"
    with pytest.raises(SubmitRefused, match="//textures/wood.png \\(used by image 'wood' in gone.blend\\)"):
        await run(farm, root / cases["missing_texture"]["blend"], out / "a")
    with pytest.raises(SubmitRefused, match="//gone_lib.blend \\(used by library 'gone_lib.blend' in main.blend\\)"):
        await run(farm, root / cases["missing_library"]["blend"], out / "a")
    # The requester refuses on its own too: the lone .blend, uploaded without its texture.
    lone = root / cases["missing_texture"]["blend"]
    identity = Identity.load_or_create(farm.root / "homes" / "artist")
    header = await file_header(lone, kind="upload", job="upload")
    await put_file(farm.requester, identity, FileHeader(kind="upload", job=header.sha256, size=header.size, sha256=header.sha256), lone)
    with pytest.raises(RemoteError) as refused:
        async with connect(farm.requester, identity) as session:
            await session.call(msg.Submit(user="artist", blend_sha256=header.sha256, friends=1))
    assert refused.value.code == "missing-files"
    assert "//textures/wood.png" in refused.value.reason and "image 'wood'" in refused.value.reason
    with pytest.raises(RemoteError) as refused:
        await run(farm, root / cases["library_file_output"]["blend"], out / "b")
    assert refused.value.code == "refused-blend" and "library evil_lib.blend" in refused.value.reason and "File Output" in refused.value.reason
    # Checked by the artist's own Blender before the upload, with the requester's rule.
    with pytest.raises(SubmitRefused, match="output is a video .*\\(unsupported-output\\)"):
        await run(farm, root / cases["video"]["blend"], out / "b")
    with pytest.raises(SubmitRefused, match="frames 5, 8 lie outside .*\\(outside-range\\)"):
        await run(farm, root / cases["packed"]["blend"], out / "c", frames=artist.parse_frames("2-9x3"))
    assert farm.audit("master")["master"]["jobs"] == []


async def test_one_job_per_request(farm, corpus):
    """A second submit into OUT with other frames is refused while OUT holds the first job's frames, else a new job."""
    root, cases = corpus
    await farm.start(friends=1)
    blend, out = root / cases["packed"]["blend"], farm.root / "out"
    first = await run(farm, blend, out, frames=(1,))
    assert [p.name for p in first.files] == ["frame_0001.png"]
    again = await run(farm, blend, out, frames=(1,))
    assert again.job == first.job  # the same request resumes
    with pytest.raises(SubmitRefused, match="holds 1 frames of job"):
        await run(farm, blend, out, frames=(2,))
    first.files[0].unlink()
    second = await run(farm, blend, out, frames=(2,), name="take_##")
    assert second.job != first.job and [p.name for p in second.files] == ["take_02.png"]
    outside = await run(farm, blend, farm.root / "outside", frames=(4,), allow_outside=True)
    assert outside.frames == (4,)


@pytest.mark.timeout(1800)  # EEVEE draws through software OpenGL here: a 64x36 frame takes 10-90 s on this loaded machine
async def test_an_eevee_udim_scene_whose_windows_differ_from_its_frame_evicts_no_honest_friend(farm, corpus, tmp_path):
    """EEVEE, a UDIM texture, screen-space reflections: the requester measures at submit that a window differs from
    the frame, checks the job on whole frames, evicts nobody, and the frames equal a direct render."""
    root, cases = corpus
    blend = root / cases["udim_eevee"]["blend"]
    backend = blender.find_backend()
    info = await blender.inspect(backend, blend, job_dir=blend.parent)
    assert info.engine == "BLENDER_EEVEE" and not info.missing and not info.refusals and not info.crop_unsafe  # no static rule catches it
    direct = {r.frame: r.path for r in await blender.render(backend, blend, blend.parent, (1,))}
    # The farm's estimate (a few seconds a frame) is far below what an EEVEE frame takes here (10-90 s): the deadlines
    # come from the frame the requester timed in its measurement at submit, or friends would give tasks back for ever.
    await farm.start(friends=2)
    result = await run(farm, blend, farm.root / "out" / "udim", frames=(1,), seconds=1500)  # one frame: EEVEE is slow here
    assert result.frames == (1,) and [p.name for p in result.files] == cases["udim_eevee"]["names"][:1]
    for frame, path in zip(result.frames, result.files):
        assert blender.compare_output(path, direct[frame], blender.PNG8, width=SIZE[0], height=SIZE[1]).verdict == "identical", frame
    assert not result.progress.evictions and not result.progress.disagreements, result.progress.evictions
    story = farm.audit("requester")["story"]
    accepted = next(e["text"] for e in story if e["tag"] == "job_accepted.v1")
    assert "DIFFER from the same pixels of the whole frame" in accepted and "(whole frames)" in accepted
    assert not any(e["tag"] == "cheater_evicted.v1" for e in story)
    logged = farm.events("requester")
    [started] = [e for e in logged if isinstance(e, core.JobStarted)]
    assert not started.settings.crop_checks  # whole frames from the start: no window was ever drawn
    assert started.settings.seconds_per_frame > farm.seconds_per_frame  # the measured frame's time, thrice
    assert all(not e.windows for e in logged if isinstance(e, core.ChecksDrawn))


@pytest.mark.timeout(2400)  # the requester's own EEVEE renders are a process each here: 60-150 s apiece on this loaded machine
async def test_a_requester_that_does_not_measure_finds_eevee_windows_unequal_by_its_own_whole_frame(farm, corpus):
    """Without the measurement at submit, the UDIM scene's windows may disagree with honest frames (most of its
    pixels crop differently; a window placed where they do not agrees within tolerance); every window that does is
    shown by the requester's own whole frame to be the engine's (Rule 19): nobody is evicted, the job switches to
    whole frames (``crops_unequal.v1``) and the frames are right."""
    root, cases = corpus
    blend = root / cases["udim_eevee"]["blend"]
    farm.measure_crops = False
    farm.seconds_per_frame = 300.0
    await farm.start(friends=2)
    result = await run(farm, blend, farm.root / "out" / "udim", seconds=2300)  # two frames: windows of both are checked
    assert result.frames == (1, 2) and not result.progress.evictions
    logged = farm.events("requester")
    [started] = [e for e in logged if isinstance(e, core.JobStarted)]
    assert started.settings.crop_checks  # crop checks ran: nothing measured, nothing on the static list
    assert not any(isinstance(e, core.CheaterEvicted) for e in logged)
    unequal = [e for e in logged if isinstance(e, core.CropsUnequal)]
    assert all(e.window.verdict == "disagree" and e.whole.verdict != "disagree" for e in unequal)
    windows_off = {e.check for e in logged if isinstance(e, core.ComparisonMade) and e.against == "pair" and e.figures.verdict == "disagree"}
    assert {e.check for e in unequal} == windows_off  # each window that disagreed was judged by a whole frame
    story = [line["text"] for line in farm.audit("requester")["story"]]
    assert bool(unequal) == any("the engine's crop" in t for t in story)
