"""Malicious files: each attack does harm without the guard and none with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from frender.blender import GuardRefused, decode_png, inspect, render

pytestmark = pytest.mark.blender
HERE = Path(__file__).parent

# fixture -> the guard's reason for refusing it
REFUSED = {
    "autorun_text": "auto-run Python script",
    "python_driver": "Python driver",
    "freestyle_module": "Freestyle Python style module",
    "osl_script": "OSL script",
    "outside_texture": "canary.png",
    "geometry_import": "canary.obj",
    "file_output": "File Output",
    "linked_library": "linked library",
}
# Refused by the guard, and harmless even without it once auto-execution is off.
STOPPED_BY_AUTOEXEC_OFF = ["autorun_text", "python_driver"]


def canaries(outside: Path) -> list[str]:
    return sorted(path.name for path in outside.glob("canary-*"))


def unguarded(blend: Path, out_png: Path, *, autoexec: bool) -> str:
    """Open and render with plain bpy, no guard and no sandbox; return its output."""
    command = [sys.executable, "-E", "-P", str(HERE / "unguarded.py"), "--", str(blend), str(out_png), str(int(autoexec))]
    return subprocess.run(command, capture_output=True, text=True, timeout=60).stdout


def has_magenta(path: Path) -> bool:
    pixels = decode_png(path, width=64, height=36).astype(int)
    return bool(np.any((pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] > 200)))


@pytest.mark.parametrize(
    ("name", "autoexec"),
    [("autorun_text", True), ("python_driver", True), ("freestyle_module", False), ("file_output", False)],
)
def test_attack_writes_canary_without_guard(malicious, name, autoexec, tmp_path):
    """Without the guard the attack writes its canary (Freestyle and File Output even with scripts off)."""
    jobs, outside = malicious
    unguarded(jobs / name / "scene.blend", tmp_path / "frame.png", autoexec=autoexec)
    written = [path for path in outside.glob(f"canary-{name}*")]
    assert written
    for path in written:
        path.unlink()


def test_outside_texture_shows_without_guard(malicious, tmp_path):
    """Without the guard an absolute image path pulls the friend's picture into the frame."""
    jobs, _ = malicious
    unguarded(jobs / "outside_texture" / "scene.blend", tmp_path / "frame.png", autoexec=False)
    assert has_magenta(tmp_path / "frame.png")


def test_geometry_import_reads_outside_without_guard(malicious, tmp_path):
    """Without the guard a geometry-node OBJ import reads a file outside the job."""
    jobs, _ = malicious
    output = unguarded(jobs / "geometry_import" / "scene.blend", tmp_path / "frame.png", autoexec=False)
    assert "VERTICES 3" in output


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_guard_refuses(bpy_backend, malicious, name):
    """The guarded render refuses the file with its reason; no canary, no frame."""
    jobs, outside = malicious
    job = jobs / name
    with pytest.raises(GuardRefused, match=REFUSED[name]) as caught:
        await render(bpy_backend, job / "scene.blend", job, [1])
    assert caught.value.reasons
    assert not canaries(outside)
    assert not list((job / "out").glob("*.png"))


@pytest.mark.parametrize("name", STOPPED_BY_AUTOEXEC_OFF)
def test_autoexec_off_alone_runs_no_code(malicious, name, tmp_path):
    """Defence in depth: with scripts off and no guard at all, auto-run text and Python drivers still run nothing."""
    jobs, outside = malicious
    unguarded(jobs / name / "scene.blend", tmp_path / "frame.png", autoexec=False)
    assert (tmp_path / "frame.png").is_file()
    assert not canaries(outside)


async def test_inspect_lists_refusals_and_files(bpy_backend, malicious):
    """inspect reports the outside texture among external files and as a refusal."""
    jobs, outside = malicious
    info = await inspect(bpy_backend, jobs / "outside_texture" / "scene.blend")
    assert str(outside / "canary.png") in info.external_files
    assert any("canary.png" in reason for reason in info.refusals)
    clean = await inspect(bpy_backend, jobs / "clean" / "scene.blend")
    assert clean.refusals == () and clean.external_files == ()
