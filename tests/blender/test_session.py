"""Render sessions: one Blender process, loaded and guarded once, fed batch after batch."""

from __future__ import annotations

import time

import pytest
import trio

from frender.blender import (
    GuardRefused,
    Limits,
    OutOfMemory,
    RenderTimeout,
    compare,
    open_session,
    render,
    start_session,
)

pytestmark = pytest.mark.blender
W, H = 64, 36


async def test_batches_share_one_process_and_match_one_shot_renders(bpy_backend, demo_scene, tmp_path, copy_job):
    """Three batches, one process (its own batch counter reaches 3); each frame, even one
    rendered twice, is handed over fresh and is identical to a one-shot render's."""
    one_shot = await render(bpy_backend, copy_job(demo_scene, tmp_path / "a"), tmp_path / "a", [1, 2, 3], threads=1)
    blend = copy_job(demo_scene, tmp_path / "b")
    seen = []

    async def on_frame(frame):
        assert frame.path.is_file()
        seen.append((frame.frame, frame.path.read_bytes()))

    async with open_session(bpy_backend, blend, tmp_path / "b", threads=1) as session:
        pid = session.pid
        first = await session.render([3, 1], on_frame=on_frame)
        assert [f.frame for f in first] == [3, 1] and session.batches == 1
        # A stale frame_0002 must not pass for the next batch's.
        (tmp_path / "b" / "out" / "frame_0002.png").write_bytes(b"stale")
        second = await session.render([2], on_frame=on_frame)
        again = await session.render([1], on_frame=on_frame)
        assert (session.pid, session.batches) == (pid, 3)
        assert session.alive
    assert not session.alive
    assert session.process.process.returncode == 0  # ended by EOF on its stdin, not a signal
    assert [frame for frame, _ in seen] == [3, 1, 2, 1]
    by_frame = {f.frame: f.path for f in one_shot}
    for frame, data in seen:
        assert compare(by_frame[frame], data, width=W, height=H).verdict == "identical"
    assert [f.seconds > 0 for f in first + second + again] == [True] * 4


async def test_cli_session_renders_batches(cli_backend, cli_scene, tmp_path, copy_job):
    """The blender command reads its batches from stdin too."""
    async with open_session(cli_backend, copy_job(cli_scene, tmp_path), tmp_path, threads=1) as session:
        first = await session.render([1])
        second = await session.render([2])
        assert session.batches == 2
        assert compare(first[0].path, second[0].path, width=W, height=H).verdict == "disagree"


async def test_guard_refusal_raises_at_open(bpy_backend, malicious):
    """A file the guard refuses never opens a session."""
    jobs, _ = malicious
    job = jobs / "file_output"
    with pytest.raises(GuardRefused, match="File Output"):
        async with open_session(bpy_backend, job / "scene.blend", job):
            pytest.fail("the session opened")


async def test_memory_limit_at_open(bpy_backend, demo_scene, tmp_path, copy_job):
    """A Blender that cannot fit its memory limit fails the open as OutOfMemory, with its last lines."""
    with pytest.raises(OutOfMemory) as caught:
        await start_session(bpy_backend, copy_job(demo_scene, tmp_path), tmp_path,
                            limits=Limits(memory_bytes=400 * 2**20))  # fmt: skip
    assert caught.value.tail


async def test_call_timeout_kills_the_session(bpy_backend, slow_scene, tmp_path, copy_job):
    """A batch past its own wall-clock limit raises RenderTimeout; the process is gone, the session dead."""
    async with open_session(bpy_backend, copy_job(slow_scene, tmp_path), tmp_path) as session:
        start = time.monotonic()
        with pytest.raises(RenderTimeout, match="limit of 2 s"):
            await session.render([1], wall_seconds=2)
        assert time.monotonic() - start < 2 + Limits().grace_seconds + 1
        assert not session.alive
        assert session.process.process.returncode is not None
        with pytest.raises(Exception, match="ended"):
            await session.render([1])


async def test_session_limit_bounds_all_calls(bpy_backend, slow_scene, tmp_path, copy_job):
    """The session's own wall-clock limit bounds every call, whatever the call's own limit."""
    blend = copy_job(slow_scene, tmp_path)
    async with open_session(bpy_backend, blend, tmp_path, limits=Limits(wall_seconds=10)) as session:
        with pytest.raises(RenderTimeout, match="limit of 10 s"):
            await session.render([1], wall_seconds=600)
        assert not session.alive


async def test_cancellation_kills_the_process(bpy_backend, slow_scene, tmp_path, copy_job):
    """Cancelling a batch stops its process promptly and ends the session."""
    session = await start_session(bpy_backend, copy_job(slow_scene, tmp_path), tmp_path)
    start = time.monotonic()
    with trio.move_on_after(2):
        await session.render([1])
    assert time.monotonic() - start < 2 + Limits().grace_seconds + 1
    assert session.process.process.returncode is not None
    assert not session.alive
    await session.aclose()


async def test_eof_on_stdin_ends_the_loop(bpy_backend, demo_scene, tmp_path, copy_job):
    """A host that goes away closes Blender's stdin: the loop ends and Blender exits cleanly."""
    session = await start_session(bpy_backend, copy_job(demo_scene, tmp_path), tmp_path, threads=1)
    try:
        await session.render([1])
        process = session.process.process
        await process.stdin.aclose()
        with trio.fail_after(20):
            await process.wait()
        assert process.returncode == 0
    finally:
        await session.aclose()
