"""Session-wide Blender fixtures: backends, the demo scenes and the malicious files, built once."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from frender.blender import BpyBackend, CliBackend, build_demo_scene

HERE = Path(__file__).parent
TINY = {"frames": 3, "resolution": (64, 36), "samples": 4}


def _copy_job(blend: Path, job_dir: Path) -> Path:
    job_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(blend, job_dir / blend.name))


@pytest.fixture
def copy_job():
    """copy_job(blend, job_dir): a job directory holding a copy of blend; returns the copy."""
    return _copy_job


@pytest.fixture(scope="session")
def bpy_backend() -> BpyBackend:
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("the bpy module is not installed (pip install 'frender[bpy]')")
    return BpyBackend()


@pytest.fixture(scope="session")
def cli_backend() -> CliBackend:
    path = shutil.which("blender")
    if path is None:
        pytest.skip("no blender command on PATH")
    return CliBackend(path)


@pytest.fixture(scope="session")
def demo_scene(bpy_backend, tmp_path_factory) -> Path:
    return build_demo_scene(tmp_path_factory.mktemp("demo") / "demo.blend", backend=bpy_backend, **TINY)


@pytest.fixture(scope="session")
def slow_scene(bpy_backend, tmp_path_factory) -> Path:
    """A scene whose one frame takes minutes: a million samples."""
    return build_demo_scene(
        tmp_path_factory.mktemp("slow") / "slow.blend", frames=1, resolution=(64, 36), samples=1_000_000,
        backend=bpy_backend,
    )  # fmt: skip


@pytest.fixture(scope="session")
def cli_scene(cli_backend, tmp_path_factory) -> Path:
    return build_demo_scene(tmp_path_factory.mktemp("cli") / "demo.blend", backend=cli_backend, **TINY)


@pytest.fixture(scope="session")
def cli_denoised_scene(cli_backend, cli_scene) -> Path:
    """The CLI demo scene with Cycles denoising switched on, saved by that Blender."""
    out = cli_scene.with_name("denoised.blend")
    expr = "import bpy; bpy.context.scene.cycles.use_denoising = True; bpy.ops.wm.save_as_mainfile(filepath=%r)"
    subprocess.run([str(cli_backend.path), "-b", "--factory-startup", str(cli_scene), "--python-expr", expr % str(out)],
                   check=True, capture_output=True)  # fmt: skip
    return out


@pytest.fixture(scope="session")
def malicious(bpy_backend, tmp_path_factory) -> tuple[Path, Path]:
    """(jobs root, outside dir): one job per attack in make_fixtures.py, aimed at the outside dir."""
    root = tmp_path_factory.mktemp("malicious")
    jobs, outside = root / "jobs", root / "outside"
    subprocess.run([sys.executable, "-E", "-P", str(HERE / "make_fixtures.py"), "--", str(jobs), str(outside)],
                   check=True, capture_output=True)  # fmt: skip
    return jobs, outside
