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
from frender.apps import artist
from frender.apps.client import SubmitRefused, submit
from frender.transports import RemoteError

HERE = Path(__file__).parent
SIZE = (64, 36)

pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(300)]

# case -> (frames asked, the format frames come back in)
RENDERED = {
    "exr_multilayer": ((), blender.OutputFormat(file_format="OPEN_EXR_MULTILAYER", color_depth="32", color_mode="RGBA")),
    "exr_half_step": ((), blender.OutputFormat(file_format="OPEN_EXR", color_depth="16", color_mode="RGBA")),
    "jpeg": ((), blender.OutputFormat(file_format="JPEG", color_depth="8", color_mode="RGB")),
    "png16_list": ((1, 4, 5), blender.OutputFormat(file_format="PNG", color_depth="16", color_mode="RGB")),
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
        work = tmp_path_factory.mktemp(f"direct-{case}")
        blend = Path(shutil.copy(root / cases[case]["blend"], work / "job.blend"))
        info = trio.run(lambda: blender.inspect(backend, blend))
        wanted = frames or tuple(range(info.frame_start, info.frame_end + 1, info.frame_step))
        done = trio.run(lambda: blender.render(backend, blend, work, wanted))
        rendered[case] = {r.frame: r.path for r in done}
    return rendered


async def run(farm, blend: Path, out: Path, **options):
    with trio.fail_after(120):
        return await submit(blend, requester=farm.requester, user="artist", home=farm.root / "homes" / "artist", friends=2, out=out, **options)


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
    multilayer = blender.decode_output(result.out.parent / "exr_multilayer" / "shot_0002.exr", RENDERED["exr_multilayer"][1], width=64, height=36)
    assert {"ViewLayer.Combined", "ViewLayer.Depth", "ViewLayer.Normal"} <= set(multilayer)
    assert multilayer["ViewLayer.Combined"].dtype == np.float32


async def test_missing_files_videos_and_frames_outside_are_refused_by_name(farm, corpus):
    """A missing texture (named, with its user), a video output and frames outside the range: clear refusals, no job."""
    root, cases = corpus
    await farm.start(friends=1)
    out = farm.root / "out"
    with pytest.raises(RemoteError) as refused:
        await run(farm, root / cases["missing_texture"]["blend"], out / "a")
    assert refused.value.code == "missing-files"
    assert "//textures/wood.png" in refused.value.reason and "image 'wood'" in refused.value.reason
    with pytest.raises(RemoteError) as refused:
        await run(farm, root / cases["video"]["blend"], out / "b")
    assert refused.value.code == "unsupported-output" and "video" in refused.value.reason
    with pytest.raises(RemoteError) as refused:
        await run(farm, root / cases["packed"]["blend"], out / "c", frames=artist.parse_frames("2-9x3"))
    assert refused.value.code == "outside-range" and "5, 8" in refused.value.reason
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
