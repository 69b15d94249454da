"""Real renders of the demo scene: frames, agreement across threads, errors and limits."""

from __future__ import annotations

import itertools
import time

import pytest
import trio
import zstandard

from frender.blender import (
    Limits,
    MissingDenoiser,
    NewerBlendFile,
    NotABlendFile,
    OutOfMemory,
    RenderTimeout,
    compare,
    decode_png,
    forge_frame,
    inspect,
    probe,
    render,
)

pytestmark = pytest.mark.blender
W, H = 64, 36


async def test_demo_frames_exist_are_not_blank_and_stream(bpy_backend, demo_scene, tmp_path, copy_job):
    """Each frame is handed over as it is saved, as a non-blank PNG in out/."""
    blend = copy_job(demo_scene, tmp_path)
    seen = []

    async def on_frame(frame):
        assert frame.path.is_file()
        seen.append(frame)

    frames = await render(bpy_backend, blend, tmp_path, [1, 2, 3], threads=1, on_frame=on_frame)
    assert seen == frames
    assert [f.path.name for f in frames] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    for frame in frames:
        assert frame.seconds > 0
        assert decode_png(frame.path, width=W, height=H)[..., :3].std() > 10


async def test_thread_counts_render_identical_and_frames_disagree(bpy_backend, demo_scene, tmp_path, copy_job):
    """1 and 2 threads give identical pixels; any two frames and a black frame disagree."""
    one = await render(bpy_backend, copy_job(demo_scene, tmp_path / "a"), tmp_path / "a", [1, 2, 3], threads=1)
    two = await render(bpy_backend, copy_job(demo_scene, tmp_path / "b"), tmp_path / "b", [2], threads=2)
    assert compare(one[1].path, two[0].path, width=W, height=H).verdict == "identical"
    for a, b in itertools.combinations(one, 2):
        assert compare(a.path, b.path, width=W, height=H).verdict == "disagree"
    black = forge_frame("black", width=W, height=H)
    assert compare(one[0].path, black, width=W, height=H).verdict == "disagree"


async def test_cli_backend_renders_its_own_scene(cli_backend, cli_scene, tmp_path, copy_job):
    """The blender command renders a scene it built, reporting its own profile."""
    profile = await probe(cli_backend)
    assert profile.blender_version and profile.device == "CPU"
    frames = await render(cli_backend, copy_job(cli_scene, tmp_path), tmp_path, [1, 2], threads=1)
    assert compare(frames[0].path, frames[1].path, width=W, height=H).verdict == "disagree"


async def test_the_profile_names_the_gl_renderer_eevee_draws_with(bpy_backend):
    """The probe records the GPU/GL renderer Blender reports in the sandbox, so an EEVEE job pairs only friends drawing alike."""
    import attrs

    profile = await probe(bpy_backend)
    assert profile.engine == "" and profile.gl_backend in ("OPENGL", "VULKAN", "METAL")
    assert profile.gl_renderer and profile.gl_version  # e.g. "llvmpipe (LLVM 15.0.6, 256 bits)", "4.5 (Core Profile) Mesa 22.3.6"
    eevee, cycles = profile.for_engine("BLENDER_EEVEE"), profile.for_engine("CYCLES")
    other_gpu = attrs.evolve(profile, gl_renderer=profile.gl_renderer + " (another)")
    assert profile.renders(eevee) and profile.renders(cycles)
    assert not other_gpu.renders(eevee) and other_gpu.renders(cycles)
    assert profile.gl_renderer in str(eevee) and profile.gl_renderer not in str(cycles)


async def test_inspect_reports_the_scene(bpy_backend, demo_scene):
    """inspect gives version, frames, size, engine and samples without rendering."""
    info = await inspect(bpy_backend, demo_scene)
    assert info.saved_with.startswith("5.0")
    assert (info.frame_start, info.frame_end, info.resolution) == (1, 3, (W, H))
    assert (info.engine, info.samples, info.denoiser, info.refusals) == ("CYCLES", 4, None, ())


async def test_newer_file_on_old_blender(cli_backend, demo_scene, tmp_path, copy_job):
    """A Blender 5.0 file on the 3.4 CLI is refused as newer, before Blender starts."""
    with pytest.raises(NewerBlendFile, match="saved by Blender 5.0, newer than this Blender"):
        await render(cli_backend, copy_job(demo_scene, tmp_path), tmp_path, [1])


async def test_patched_header_is_newer(bpy_backend, cli_scene, tmp_path, copy_job):
    """A header claiming Blender 9.99 is refused as newer."""
    blend = copy_job(cli_scene, tmp_path)
    data = blend.read_bytes()
    blend.write_bytes(data[:9] + b"999" + data[12:])
    with pytest.raises(NewerBlendFile, match="9.99"):
        await inspect(bpy_backend, blend)


async def test_zstd_file_from_newer_blender(bpy_backend, demo_scene, tmp_path, copy_job):
    """A zstd file saved by Blender 5.3 (Huffman-coded, as 5.3 writes it) is refused by 5.0.1 before it renders."""
    blend = copy_job(demo_scene, tmp_path)
    plain = zstandard.ZstdDecompressor().stream_reader(blend.read_bytes()).read()
    assert plain.startswith(b"BLENDER17-01v0500")
    blend.write_bytes(zstandard.ZstdCompressor(level=19).compress(plain.replace(b"v0500", b"v0503", 1)))
    with pytest.raises(NewerBlendFile, match="saved by Blender 5.3, newer than this Blender 5.0"):
        await inspect(bpy_backend, blend)
    with pytest.raises(NewerBlendFile, match="5.3"):
        await render(bpy_backend, blend, tmp_path, [1])


async def test_text_file_named_blend(bpy_backend, tmp_path):
    """A text file named .blend is not a blend file."""
    blend = tmp_path / "notes.blend"
    blend.write_text("hello, I am not a scene\n")
    with pytest.raises(NotABlendFile, match="not a .blend file"):
        await render(bpy_backend, blend, tmp_path, [1])


async def test_corrupt_file(bpy_backend, cli_scene, tmp_path, copy_job):
    """A valid header over garbage is a clear NotABlendFile carrying Blender's words."""
    blend = copy_job(cli_scene, tmp_path)
    blend.write_bytes(blend.read_bytes()[:200] + bytes(range(256)) * 64)
    with pytest.raises(NotABlendFile, match="could not read") as caught:
        await render(bpy_backend, blend, tmp_path, [1])
    assert caught.value.tail


async def test_missing_denoiser(cli_backend, cli_denoised_scene, tmp_path, copy_job):
    """Debian's Blender 3.4 has no OpenImageDenoise: a denoised scene says so."""
    with pytest.raises(MissingDenoiser, match="OpenImageDenoise"):
        await render(cli_backend, copy_job(cli_denoised_scene, tmp_path), tmp_path, [1])


async def test_wall_clock_limit_kills(bpy_backend, slow_scene, tmp_path, copy_job):
    """A render past its wall-clock limit is killed and reported as a timeout."""
    start = time.monotonic()
    with pytest.raises(RenderTimeout):
        await render(bpy_backend, copy_job(slow_scene, tmp_path), tmp_path, [1], limits=Limits(wall_seconds=2))
    assert time.monotonic() - start < 2 + Limits().grace_seconds + 1


async def test_cancellation_kills(bpy_backend, slow_scene, tmp_path, copy_job):
    """Cancelling the caller stops the render promptly."""
    start = time.monotonic()
    with trio.move_on_after(2):
        await render(bpy_backend, copy_job(slow_scene, tmp_path), tmp_path, [1])
    assert time.monotonic() - start < 2 + Limits().grace_seconds + 1


async def test_memory_limit(bpy_backend, demo_scene, tmp_path, copy_job):
    """A Blender that cannot fit its memory limit is reported as out of memory."""
    with pytest.raises(OutOfMemory):
        await render(bpy_backend, copy_job(demo_scene, tmp_path), tmp_path, [1], limits=Limits(memory_bytes=400 * 2**20))


async def test_blend_outside_job_dir_is_a_caller_error(bpy_backend, demo_scene, tmp_path):
    """render refuses a .blend that is not inside its job directory."""
    with pytest.raises(ValueError, match="not inside the job directory"):
        await render(bpy_backend, demo_scene, tmp_path, [1])
