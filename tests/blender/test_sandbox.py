"""The bubblewrap sandbox: no network, home hidden, only the job directory writable."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from frender.blender import sandbox_available
from frender.blender._sandbox import bwrap_prefix

pytestmark = pytest.mark.skipif(not sandbox_available(), reason="bubblewrap (bwrap) is not usable here")


def sandboxed(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    job, run = tmp_path / "job", tmp_path / "run"
    job.mkdir()
    run.mkdir()
    prefix = bwrap_prefix(run_dir=run, job_dir=job, job_writable=True, install_dirs=())
    return subprocess.run(prefix + ["/bin/sh", "-c", script], capture_output=True, text=True, env={"JOB": str(job)})


def test_only_job_dir_writable(tmp_path):
    """Writing in the job directory works; anywhere else fails."""
    result = sandboxed(tmp_path, 'touch "$JOB/ok" && ! touch /usr/frender-x 2>/dev/null && ! touch /var/tmp/x 2>/dev/null')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "job" / "ok").exists()


def test_home_hidden(tmp_path):
    """The friend's home directory does not exist inside the sandbox."""
    home = os.path.expanduser("~")
    assert sandboxed(tmp_path, f'test ! -e "{home}"').returncode == 0


def test_no_network(tmp_path):
    """Only the loopback interface exists inside the sandbox."""
    result = sandboxed(tmp_path, "cat /proc/net/dev")
    interfaces = {line.split(":")[0].strip() for line in result.stdout.splitlines() if ":" in line}
    assert interfaces == {"lo"}


@pytest.mark.blender
async def test_a_sandboxed_render_outlives_the_thread_that_started_it(bpy_backend, demo_scene, copy_job, tmp_path, monkeypatch):
    """trio starts processes from worker threads that retire when idle; the sandboxed render must not die with them."""
    import trio._core._thread_cache as thread_cache

    from frender.blender import render

    monkeypatch.setattr(thread_cache, "IDLE_TIMEOUT", 0.05)  # retire the spawning thread at once
    blend = copy_job(demo_scene, tmp_path / "job")
    frames = await render(bpy_backend, blend, tmp_path / "job", [1, 2, 3])  # Blender starts in ~0.5 s: long after
    assert [f.frame for f in frames] == [1, 2, 3]
