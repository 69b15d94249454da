"""The requester load benchmark runs end to end in its smallest mode (as run.py runs it), and its frames are honest copies."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import requester_load  # noqa: E402
from test_run import bench_run, plain  # noqa: E402

from frender.blender import compare, decode_png  # noqa: E402


def test_variants_differ_in_bytes_not_pixels(tmp_path):
    """Each copy of the frame has its own bytes and sha256 but the same 1920x1080 pixels, like honest renders."""
    variants = requester_load.write_variants(tmp_path)
    data = [Path(v["path"]).read_bytes() for v in variants[:2]]
    assert len({v["sha256"] for v in variants}) == len(variants)
    assert [hashlib.sha256(d).hexdigest() for d in data] == [v["sha256"] for v in variants[:2]]
    assert compare(data[0], data[1], width=1920, height=1080).verdict == "identical"
    pixels = decode_png(data[0], width=1920, height=1080)
    assert all(np.unique(pixels[::4, ::4, c]).size > 100 for c in range(3))  # a rendered-looking image, not a flat colour


@pytest.mark.timeout(180)
def test_smallest_run_measures_the_requester():
    """Two simulated friends over real TLS get frames accepted, and the requester's CPU and memory per frame are reported."""
    entries = bench_run.bench_requester_load("tiny", plain)
    out = entries["requester_cpu_ms_per_frame"]["detail"]
    assert out["params"]["jobs"] == 1
    assert out["accepted_frames_per_s"] > 0
    assert entries["requester_cpu_ms_per_frame"]["value"] > 0
    assert 0 < entries["requester_loop_ms_per_frame"]["value"] <= entries["requester_cpu_ms_per_frame"]["value"]  # the loop's share of it
    assert out["requester_rss_end_mb"] > 0 and entries["requester_kb_per_friend"]["value"] is not None
    assert out["generators"].get("put_ok", 0) > 0
    assert not any(key.startswith(("refused", "master error")) for key in out["generators"])
