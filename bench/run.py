"""Every fRender benchmark: ``python bench/run.py [--quick]``.

Prints a table and merges the figures into bench/results.json (each entry with
its parameters and the commit that produced it: ``commit``, ``dirty``); the
full run also draws docs/efficiency.png (efficiency against N). ``--quick``
shrinks each benchmark so the whole takes under 3 minutes on a 2-core machine;
``--size tiny`` is the smallest run that still goes through every step (what
tests/bench/test_run.py runs, so a benchmark broken by a change fails the
suite). ``--only NAME ...`` runs some of them. docs/performance.md reports the
full run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _record  # noqa: E402
import attacks_live  # noqa: E402
import blender_ratio  # noqa: E402
import crop_equal  # noqa: E402
import denoise_tiles  # noqa: E402
import efficiency  # noqa: E402
import frames_transfer  # noqa: E402
import master_load  # noqa: E402
import replay  # noqa: E402
import requester_load  # noqa: E402
import tiles  # noqa: E402
import transfer  # noqa: E402

TARGETS = {
    "efficiency": (">=", 0.85),
    "transfer_ratio": (">=", 0.5),
    "assign_p99_ms": ("<=", 5.0),
    "replay_events_per_s": (">=", 100_000),
    "blender_ratio": ("<=", 1.15),
    "requester_loop_ms_per_frame": ("<=", 30.0),  # one core serves 1,000 friends at 30 s a frame
    "requester_kb_per_friend": ("<=", 150.0),
    "tiles_speedup_per_friend": (">=", 0.8),
}
SIZES = ("full", "quick", "tiny")


def _machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(), "kernel": platform.release()}


def _safe(name: str, fn, *args, **kwargs) -> dict:
    """``fn``'s figures, or ``{"error": ...}``: one failed benchmark must not lose the others' (tests call the benches unwrapped)."""
    t0 = time.perf_counter()
    print(f"... {name}", file=sys.stderr, flush=True)
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"    {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return out


def _pick(size: str, full, quick, tiny):
    return {"full": full, "quick": quick, "tiny": tiny}[size]


# Each benchmark: (size, run) -> the entries it adds to results.json. ``run`` is ``_safe`` in a real
# run and a plain call in the tests, so a broken benchmark raises there.

Runner = Callable[..., dict]


def bench_efficiency(size: str, run: Runner) -> dict:
    """M frames on N friends, modelled 200 ms a frame (1080p crop costs), checks on; 1 s a frame at N=8 beside it."""
    frames = _pick(size, 240, 48, 8)
    ns = _pick(size, (2, 8, 32), (2, 8), (2,))
    seconds = 0.2 if size != "tiny" else 0.05
    runs = {}
    slow = None
    for n in ns:
        runs[n] = run(f"efficiency N={n}", efficiency.run, friends=n, frames=frames, seconds=seconds, startup=0.05)
        if n == 8 and size == "full":  # the same job with frames 5 times longer, before N=32's 35 processes load the cores
            slow = run("efficiency N=8, 1 s a frame", efficiency.run, friends=8, frames=frames, seconds=1.0, startup=0.25)
    main_n = 8 if 8 in runs else ns[-1]
    main_run = runs[main_n]
    entries = {
        "efficiency": {
            "value": main_run.get("efficiency"),
            "with_checks": main_run.get("efficiency_with_checks"),
            "what": "(M x t / N) / wall time from submit to the last final frame at the client; with_checks: (M + check work) x t / N",
            "params": {"frames": frames, "friends": main_n, "seconds_per_frame": seconds, "startup_seconds": 0.05, "backend": "modelled",
                       "checks_per_friend": 1, "window_startup": efficiency.WINDOW_STARTUP},
            "by_n": {str(n): r for n, r in runs.items()},
        },
        "verify_overhead": {
            "value": main_run.get("verify_overhead"),
            "params": {"frames": frames, "friends": main_n, "what": "check work in frames (windows by their modelled cost) / M"},
            "check_work_frames": main_run.get("check_work_frames"),
            "check_copies": main_run.get("check_copies"),
            "arbitrations": main_run.get("arbitrations"),
            "backup_frames": main_run.get("frames_assigned_by_kind", {}).get("backup", 0),
        },
    }
    if slow is not None:  # fixed per-task costs weigh 5 times less
        entries["efficiency"]["at_1s_a_frame"] = slow
    return entries


def bench_efficiency_tail(size: str, run: Runner) -> dict:
    """A short animation whose last frames would keep a few friends busy while the rest wait (M = 1.5 N, 2 s a frame,
    own renders 8 at once), in whole frames and with tiles for its tail, each run ``repeats`` times: the medians."""
    friends, frames, grid, repeats = _pick(size, (32, 48, "2x1", 3), (8, 12, "2x2", 1), (2, 3, "2x1", 1))
    seconds = 0.05 if size == "tiny" else 2.0
    out: dict[str, dict] = {}
    for split in ("", grid):
        label = split or "whole"
        runs = [
            run(f"efficiency tail N={friends} {label} #{i + 1}", efficiency.run, friends=friends, frames=frames, seconds=seconds, startup=0.05,
                tiles=split, own_renders=8)
            for i in range(repeats)
        ]
        figures = sorted(r["efficiency"] for r in runs if r.get("efficiency") is not None)
        out[label] = {
            "efficiency": figures[len(figures) // 2] if figures else None,
            "runs": [{k: r.get(k) for k in ("efficiency", "actual_s", "ideal_s", "cpu_bound_efficiency", "load_average", "tasks_by_kind", "error")}
                     for r in runs],
        }
    whole, tiled = out["whole"]["efficiency"], out[grid]["efficiency"]
    return {
        "efficiency_tail": {
            "value": tiled,
            "whole_frames": whole,
            "gain": None if not (whole and tiled) else round(tiled / whole, 3),
            "what": f"efficiency (M x t / N over the wall time) of {frames} frames on {friends} friends with {grid} tiles for the tail, "
                    "against whole frames; medians",
            "params": {"friends": friends, "frames": frames, "seconds_per_frame": seconds, "tiles": grid, "own_renders_at_once": 8, "repeats": repeats},
            **out,
        }
    }


def bench_transfer(size: str, run: Runner) -> dict:
    """A large .blend and many small frames, vs plain TLS on loopback (tiny: the small frames only)."""
    size_mb = _pick(size, 512, 64, 4)
    blend = run("transfer (.blend)", transfer.run, size_mb)
    count = _pick(size, 200, 40, 5)
    frame_sizes = ((160, 90),) if size == "tiny" else ((160, 90), (1920, 1080))
    frames_t = run("transfer (frames)", frames_transfer.run, count, sizes=frame_sizes)
    ratios = {
        "blend_put_vs_tls": blend.get("frender_put", {}).get("vs_tls"),
        "blend_get_vs_tls": blend.get("frender_get", {}).get("vs_tls"),
        **{f"frames_{w}x{h}_vs_tls": frames_t.get(f"{w}x{h}", {}).get("ratio_vs_tls") for w, h in frame_sizes},
    }
    return {
        "transfer_ratio": {
            "value": min(ratios.values()) if None not in ratios.values() else None,
            **ratios,
            "params": {"blend_mb": size_mb, "frames": count, "frame_sizes": [f"{w}x{h}" for w, h in frame_sizes], "what": "worst of the ratios"},
            "blend": blend,
            "frames": frames_t,
        }
    }


def bench_master_load(size: str, run: Runner) -> dict:
    """Heartbeats per second and assignment latency with thousands of simulated friends."""
    load = run(
        "master load", master_load.run,
        friends=_pick(size, 5000, 1000, 50), workers=_pick(size, 4, 2, 1), sessions_per_worker=_pick(size, 12, 6, 2),
        steady_s=_pick(size, 15.0, 5.0, 2.0), ramp=_pick(size, (1.5, 2.0, 3.0, 4.0), (2.0,), ()), step_s=_pick(size, 8.0, 4.0, 1.0),
    )
    entries = {
        "heartbeats_per_s": {
            "value": load.get("heartbeats_per_s"),
            "held": load.get("steady_held"),
            "sustained_max": load.get("sustained_max_heartbeats_per_s"),
            "master_cpu_us_per_heartbeat": load.get("master_cpu_us_per_heartbeat"),
            "params": load.get("params"),
            "detail": load,
        },
        "assign_p50_ms": {"value": load.get("assign_p50_ms"), "params": load.get("params")},
        "assign_p99_ms": {"value": load.get("assign_p99_ms"), "params": load.get("params")},
    }
    if size == "full":  # the same with the master's log at synchronous=NORMAL: what an fsync per ask costs
        normal = run("master load, sync normal", master_load.run, friends=5000, workers=4, sessions_per_worker=12,
                     steady_s=15.0, ramp=(), sync="normal")
        entries["assign_p99_ms"]["sync_normal"] = {k: normal.get(k) for k in ("assign_p50_ms", "assign_p99_ms", "heartbeats_per_s", "steady_held")}
    return entries


def bench_replay(size: str, run: Runner) -> dict:
    """Events per second to verify and fold a large log."""
    n_events = _pick(size, 1_000_000, 100_000, 2_000)
    rep = run("replay", replay.run, n_events, single=_pick(size, 2_000, 2_000, 200))
    return {"replay_events_per_s": {"value": rep.get("replay_events_per_s"), "params": {"events": n_events}, "detail": rep}}


def bench_blender_ratio(size: str, run: Runner) -> dict:
    """Real Blender: the demo scene through fRender vs direct Blender runs."""
    frames = _pick(size, 48, 12, 2)
    br = run("blender ratio", blender_ratio.run, frames=frames)
    return {
        "blender_ratio": {
            "value": br.get("blender_ratio"),
            "farm_vs_pair": br.get("farm_vs_pair"),
            "params": br.get("params", {"frames": frames}),
            "detail": br,
        }
    }


def bench_requester_load(size: str, run: Runner, friends: int | None = None) -> dict:
    """One requester, simulated friends over real TLS, 1920x1080 frames: CPU per frame, memory per friend."""
    params = dict(_pick(size, requester_load.FULL, requester_load.QUICK, requester_load.TINY))
    if friends is not None:
        params["friends"] = friends
    # Where the requester's CPU goes, when py-spy is installed (pip install py-spy): its top entries land in the results.
    profile = Path(tempfile.mkdtemp(prefix="frender-profile-")) / "requester.raw" if shutil.which("py-spy") and size != "tiny" else None
    rl = run("requester load", requester_load.run, **params, profile=profile)
    return {
        "requester_loop_ms_per_frame": {
            "value": rl.get("requester_loop_ms_per_frame"),
            "what": "CPU of the requester's event loop (its trio thread) per accepted frame; total CPU beside it",
            "requester_cpu_ms_per_frame": rl.get("requester_cpu_ms_per_frame"),
            "params": rl.get("params"),
        },
        "requester_cpu_ms_per_frame": {
            "value": rl.get("requester_cpu_ms_per_frame"),
            "what": "CPU of the requester, all its threads and its comparison workers, per accepted frame",
            "requester_loop_ms_per_frame": rl.get("requester_loop_ms_per_frame"),
            "delivery_to_final_p50_ms": rl.get("delivery_to_final_p50_ms"),
            "log_commits": rl.get("log_commits"),
            "accepted_frames_per_s": rl.get("accepted_frames_per_s"),
            "offered_frames_per_s": rl.get("offered_frames_per_s"),
            "final_frames_per_s": rl.get("final_frames_per_s"),
            "delivery_to_final_p99_ms": rl.get("delivery_to_final_p99_ms"),
            "cpu_s_in_window": rl.get("cpu_s_in_window"),
            "params": rl.get("params"),
            "detail": rl,
        },
        "requester_kb_per_friend": {"value": rl.get("requester_kb_per_friend"), "params": rl.get("params")},
        "requester_final_frames_per_s": {
            "value": rl.get("final_frames_per_s"),
            "what": "frames made final per second in the window, beside the copies accepted: admission keeps them level",
            "accepted_frames_per_s": rl.get("accepted_frames_per_s"),
            "delivery_to_final_p50_ms": rl.get("delivery_to_final_p50_ms"),
            "delivery_to_final_p99_ms": rl.get("delivery_to_final_p99_ms"),
            "params": rl.get("params"),
        },
    }


def bench_crop_equal(size: str, run: Runner) -> dict:
    """Real Blender: per file, per engine and effect, whether a window equals the same pixels of its frame."""
    scenes = _pick(size, crop_equal.SCENES, ("cycles", "cycles_glare", "workbench"), ("cycles", "cycles_glare"))
    corpus = _pick(size, crop_equal.CORPUS, (), ())
    result = run("crop equal", crop_equal.run, size=(32, 18) if size == "tiny" else (64, 36), scenes=scenes, corpus=corpus)
    rows = result.get("rows")
    return {
        "crop_equal": {
            "value": None if rows is None else sum(not r["equal"] for r in rows),
            "what": "files whose windows differ from the frame (blender.measure_crops)",
            **result,
        }
    }


def bench_attacks_live(size: str, run: Runner) -> dict:
    """Cheating friends of the real protocol on a live farm (real processes, modelled renders): trust farmed, then forged."""
    rows = _pick(size, tuple(attacks_live.ROWS), ("coalition alone", "sybils"), ("coalition alone",))
    frames = _pick(size, 48, 24, 24)
    out = run("attacks_live", attacks_live.run, rows, frames=frames)
    caught = [r["summary"] for r in out.values() if r["summary"].get("forged_delivered")] if "error" not in out else []
    return {
        "attacks_live": {
            "value": max((r.get("forged_final_per_1000") or 0.0 for r in caught), default=None),
            "what": "the most forged frames final at a job's end, per 1,000 forged, over the rows (target <= 10)",
            "params": {"frames": frames, "rows": list(rows), "seconds_per_frame": attacks_live.SECONDS},
            "rows": out,
        }
    }


def bench_tiles(size: str, run: Runner) -> dict:
    """One 1920x1080 still (modelled: a window costs its area plus a fixed start-up) on N friends in N tiles, against one
    friend rendering it whole; checks on, the requester's own checks side by side."""
    seconds = _pick(size, 40.0, 16.0, 2.0)
    ns = _pick(size, (1, 2, 4, 8), (1, 8), (1, 2))
    by_n = run("tiles", tiles.sweep, ns, seconds=seconds, own_renders=8)
    top = str(max(ns))
    main_run = by_n.get(top, {}) if isinstance(by_n, dict) else {}
    for n, r in by_n.items() if isinstance(by_n, dict) else ():
        if n != top and isinstance(r, dict):
            r.pop("timeline", None)  # where the time went: the largest N's is kept
    return {
        "tiles_speedup_per_friend": {
            "value": main_run.get("speedup_per_friend"),
            "speedup": main_run.get("speedup"),
            "what": "T(1) / T(N) / N at the largest N: T from submit to the stitched frame in the artist's folder; T(1) one friend, whole",
            "params": {"friends": int(top), "seconds_per_frame": seconds, "backend": "modelled", "frame": "1920x1080 cost model, 480x270 pixels",
                       "window_startup": tiles.WINDOW_STARTUP, "own_renders_at_once": 8, "tiles": "one a friend"},
            "by_n": by_n,
        }
    }


def bench_denoise_tiles(size: str, run: Runner) -> dict:
    """Real Blender: a still with the denoiser on, its tiles rendered noisy with the denoising passes, stitched and
    denoised once, against the frame rendered whole with the denoiser on (borders between tiles beside the rest)."""
    dims = _pick(size, (160, 90), (160, 90), (48, 27))
    samples = _pick(size, 16, 16, 4)
    grid = _pick(size, (2, 2), (2, 2), (2, 2))
    result = run("denoise tiles", denoise_tiles.run, size=dims, tiles=grid, samples=samples)
    if size == "full":  # the same frame in 4x4 tiles: three times the borders
        result["at_4x4"] = run("denoise tiles 4x4", denoise_tiles.run, size=dims, tiles=(4, 4), samples=samples)
    # The requester's denoising step alone, once a frame: at 1080p in a full run, at the run's size otherwise.
    result["step"] = run("denoise step", denoise_tiles.step, size=(1920, 1080) if size == "full" else dims)
    return {"denoise_tiles": {"value": result.get("tiled", {}).get("frame", {}).get("over_2"), "what": denoise_tiles.WHAT, **result}}


BENCHES: dict[str, Callable[..., dict]] = {
    "efficiency": bench_efficiency,
    "efficiency_tail": bench_efficiency_tail,
    "transfer": bench_transfer,
    "master_load": bench_master_load,
    "replay": bench_replay,
    "blender_ratio": bench_blender_ratio,
    "crop_equal": bench_crop_equal,
    "requester_load": bench_requester_load,
    "attacks_live": bench_attacks_live,
    "tiles": bench_tiles,
    "denoise_tiles": bench_denoise_tiles,
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same as --size quick")
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--out", type=Path, default=_record.RESULTS)
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES), help="run these benchmarks alone and update their figures in --out")
    parser.add_argument("--requester-friends", type=int, help="simulated friends for requester_load (default: 1,000; --quick: 100)")
    parser.add_argument("--plot", type=Path, default=HERE.parent / "docs" / "efficiency.png", help="where a full run draws efficiency against N")
    args = parser.parse_args(argv)
    size = "quick" if args.quick else args.size
    mark = _record.provenance()  # the code that runs: edits made while it runs are not its
    load_before = os.getloadavg()[0]  # the machine is shared: its load says how far to trust a figure
    started = time.perf_counter()
    command = " ".join(["python bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    entries: dict = {}
    for name in args.only or list(BENCHES):
        if name == "requester_load":
            entries |= bench_requester_load(size, _safe, args.requester_friends)
        else:
            entries |= BENCHES[name](size, _safe)
    load = {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)}
    for entry in entries.values():
        entry["command"] = command
        entry["size"] = size
        entry["machine"] = _machine()
        entry["load_average"] = load
    if args.only is None:
        entries["run"] = {"size": size, "command": command, "seconds": round(time.perf_counter() - started, 1)}
    res = _record.update(entries, args.out, mark)
    if size == "full" and "efficiency" in entries:
        _plot(entries["efficiency"]["by_n"], args.plot)
    _table(res, keys=tuple(entries))
    return res


def _plot(runs: dict, path: Path) -> None:
    """Efficiency against N (the runs that produced a figure); nothing to draw, no plot."""
    ns = sorted((int(n) for n, r in runs.items() if r.get("efficiency") is not None), key=int)
    if not ns:
        print("no efficiency run produced a figure: no plot", file=sys.stderr)
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install '.[bench]'): no plot", file=sys.stderr)
        return
    runs = {int(n): r for n, r in runs.items()}
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    t = runs[ns[0]]["params"]["seconds_per_frame"]
    ax.plot(ns, [runs[n]["efficiency"] for n in ns], "o-", label=f"against M x t / N (t = {t:g} s)")
    ax.plot(ns, [runs[n].get("efficiency_with_checks") for n in ns], "s--", label="against (M + checks) x t / N")
    ax.axhline(TARGETS["efficiency"][1], color="grey", linestyle="--", label=f"target {TARGETS['efficiency'][1]:g} at N=8")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("friends N (processes on a 2-core machine)")
    ax.set_ylabel("ideal / actual")
    ax.set_title(f"Parallel efficiency, M={runs[ns[0]]['params']['frames']} frames")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def _table(res: dict, keys: tuple[str, ...] | None = None) -> None:
    rows = []
    order = ("attacks_live", "efficiency", "efficiency_tail", "verify_overhead", "transfer_ratio", "heartbeats_per_s", "assign_p50_ms", "assign_p99_ms",
             "replay_events_per_s",
             "blender_ratio", "requester_loop_ms_per_frame", "requester_cpu_ms_per_frame", "requester_kb_per_friend", "tiles_speedup_per_friend",
             "denoise_tiles")
    for key in order:
        if key not in res or (keys is not None and key not in keys):
            continue
        entry = res[key]
        value = entry.get("value")
        target = TARGETS.get(key)
        if "error" in entry:
            verdict = entry["error"]
        elif target is None or value is None:
            verdict = ""
        else:
            ok = value >= target[1] if target[0] == ">=" else value <= target[1]
            verdict = f"{target[0]} {target[1]:g}: {'met' if ok else 'MISSED'}"
        if key == "heartbeats_per_s" and entry.get("params"):
            verdict = f"{entry['params']['friends']}/s offered: {'held' if entry.get('held') else 'NOT held'}; sustained max {entry.get('sustained_max')}/s"
        rows.append((key, value, f"{verdict} [{entry.get('commit')}{'+dirty' if entry.get('dirty') else ''}]"))
    for n, r in res.get("efficiency", {}).get("by_n", {}).items() if keys is None or "efficiency" in keys else ():
        rows.append((f"  efficiency N={n}", r.get("efficiency"), r.get("error") or f"{r.get('actual_s')} s vs {r.get('ideal_s')} s"
                     f" (with checks {r.get('ideal_with_checks_s')} s: {r.get('efficiency_with_checks')})"))
    if not rows:
        return
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'value':>12}  target [commit]")
    for name, value, verdict in rows:
        print(f"{name:<{width}}  {value!s:>12}  {verdict}")
    print(f"wrote bench/results.json ({res.get('run', {}).get('seconds', '?')} s)")


if __name__ == "__main__":
    main()
