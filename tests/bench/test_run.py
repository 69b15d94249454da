"""Every benchmark of bench/run.py runs end to end at its smallest size, so a change that breaks one fails the suite."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import _record  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
assert _spec is not None and _spec.loader is not None
bench_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_run)


def plain(name, fn, *args, **kwargs):
    """Run a benchmark as run.py does, but let its errors through."""
    return fn(*args, **kwargs)


# The figure each benchmark must produce (its entry's "value"); real Blender's has the blender marker.
HEADLINES = {
    "efficiency": ("efficiency", "verify_overhead"),
    "efficiency_tail": ("efficiency_tail",),
    "transfer": ("transfer_ratio",),
    "master_load": ("heartbeats_per_s", "assign_p50_ms", "assign_p99_ms"),
    "replay": ("replay_events_per_s",),
    "blender_ratio": ("blender_ratio",),
    "crop_equal": ("crop_equal",),
    "tiles": ("tiles_speedup_per_friend",),
    "denoise_tiles": ("denoise_tiles",),
}


def test_every_benchmark_of_run_py_has_a_test() -> None:
    """Each benchmark run.py runs is covered here (requester_load in test_requester_load.py, attacks_live in test_attacks_live.py)."""
    assert set(bench_run.BENCHES) == set(HEADLINES) | {"requester_load", "attacks_live"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[pytest.mark.blender, pytest.mark.timeout(600)]) if n in ("blender_ratio", "crop_equal", "denoise_tiles") else n
        for n in HEADLINES
        if n != "efficiency"
    ],
)
@pytest.mark.timeout(240)
def test_a_benchmark_runs_at_its_smallest_size(name: str) -> None:
    """The benchmark runs through every step at size tiny and produces each of its figures."""
    entries = bench_run.BENCHES[name]("tiny", plain)
    for key in HEADLINES[name]:
        assert entries[key]["value"] is not None, (key, entries[key])
    json.dumps(entries)  # what results.json holds


@pytest.mark.timeout(240)
def test_efficiency_counts_the_checks_in_windows_and_every_frame_arrives() -> None:
    """The efficiency benchmark at size tiny delivers every frame; its crop checks count as windows, not whole frames,
    and it gives efficiency both against M x t / N and with the checks' work."""
    entries = bench_run.BENCHES["efficiency"]("tiny", plain)
    assert entries["efficiency"]["value"] is not None and entries["verify_overhead"]["value"] is not None
    out = entries["efficiency"]["by_n"]["2"]
    assert out["frames_received"] == 8
    assert out["check_copies"] + out["own_check_renders"] >= 8  # a crop check on every frame
    assert 0 < out["check_work_frames"] < out["check_copies"] + out["own_check_renders"] + out["arbitrations"]
    assert out["ideal_s"] < out["ideal_with_checks_s"]
    assert 0 < out["efficiency"] < out["efficiency_with_checks"]
    where = out["per_friend_s"]  # where each friend's time went: every frame copy's render is in it once
    frame_copies = sum(n for role, n in out["copies_by_role"].items() if role != "check")  # backups of late tasks too, on a busy machine
    assert frame_copies >= 8 and where["rendering_frames"] == pytest.approx(frame_copies * 0.05 / 2, abs=1e-3)
    # New jobs' spotted batches are the requester's windows alone (ANCHORED_SPOTS): a tiny job's may all be.
    assert 0 <= where["rendering_checks"] < where["rendering_frames"]


def test_the_plot_draws_nothing_without_figures(tmp_path, capsys) -> None:
    """With no efficiency run that produced a figure, _plot says so and writes nothing (it used to crash)."""
    bench_run._plot({"2": {"error": "TypeError: boom"}, "8": {"efficiency": None}}, tmp_path / "efficiency.png")
    assert not (tmp_path / "efficiency.png").exists()
    assert "no plot" in capsys.readouterr().err


def test_the_table_shows_a_failed_benchmark() -> None:
    """A benchmark that failed shows its error in the table rather than stopping it."""
    bench_run._table({"efficiency": {"error": "TypeError: boom", "by_n": {"2": {"error": "TypeError: boom"}}}})


def test_each_entry_records_the_commit_that_produced_it(tmp_path) -> None:
    """Entries written to results.json carry the commit (git rev-parse --short HEAD) and a dirty flag; other keys stay."""
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"crop_cost": {"rows": [], "commit": "0000000", "dirty": False}}))
    data = _record.update({"replay_events_per_s": {"value": 1}}, out)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH, capture_output=True, text=True).stdout.strip()
    assert data == json.loads(out.read_text())
    assert data["replay_events_per_s"]["commit"] == head and isinstance(data["replay_events_per_s"]["dirty"], bool)
    assert data["crop_cost"] == {"rows": [], "commit": "0000000", "dirty": False}


@pytest.mark.timeout(120)
def test_run_py_only_writes_stamped_entries(tmp_path) -> None:
    """`run.py --only replay --size tiny` merges its entry, with command, size and commit, into --out."""
    out = tmp_path / "results.json"
    res = bench_run.main(["--only", "replay", "--size", "tiny", "--out", str(out)])
    entry = json.loads(out.read_text())["replay_events_per_s"]
    assert entry == res["replay_events_per_s"]
    assert entry["value"] > 0 and entry["size"] == "tiny" and entry["command"].endswith("--only replay --size tiny --out " + str(out))
    assert "commit" in entry and "dirty" in entry and set(entry["load_average"]) == {"start", "end"}


@pytest.mark.blender
@pytest.mark.timeout(600)
def test_crop_equal_tells_a_glare_files_windows_from_a_plain_ones() -> None:
    """At size tiny the crop bench finds Cycles' windows equal to its frame and a compositor glare's different."""
    rows = {r["file"]: r for r in bench_run.BENCHES["crop_equal"]("tiny", plain)["crop_equal"]["rows"]}
    assert rows["cycles"]["equal"] and not rows["cycles_glare"]["equal"]
    assert all(len(r["windows"]) == 3 for r in rows.values())


@pytest.mark.blender
@pytest.mark.timeout(600)
def test_a_denoised_still_in_noisy_tiles_denoised_once_is_the_whole_frame_denoised_afterwards() -> None:
    """Real Blender: the tiles rendered noisy with the denoising passes stitch into exactly the noisy frame, and the
    stitched frame denoised once is, pixel for pixel, the whole noisy frame denoised the same way: no seam, borders
    and interior alike against the frame rendered whole with the denoiser on."""
    entry = bench_run.BENCHES["denoise_tiles"]("tiny", plain)["denoise_tiles"]
    assert entry["stitched_noisy_max_diff"] == 0.0
    assert entry["linear_max_diff_vs_whole_denoised_after"] == 0.0
    assert entry["tiled_vs_whole_denoised_after"]["frame"]["max"] == 0
    assert entry["tiled"] == entry["whole_denoised_after"]
    assert entry["seamless"]
    assert 0 < entry["tiled"]["frame"]["pixels"] == 48 * 27
