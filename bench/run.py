"""Every fRender benchmark: ``python bench/run.py [--quick]``.

Prints a table and writes bench/results.json (each entry with its
parameters); the full run also draws docs/efficiency.png (efficiency against
N). ``--quick`` shrinks each benchmark so the whole takes under 3 minutes on
a 2-core machine; docs/performance.md reports the full run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import blender_ratio  # noqa: E402
import efficiency  # noqa: E402
import frames_transfer  # noqa: E402
import master_load  # noqa: E402
import replay  # noqa: E402
import requester_load  # noqa: E402
import transfer  # noqa: E402

TARGETS = {
    "efficiency": (">=", 0.95),
    "transfer_ratio": (">=", 0.5),
    "assign_p99_ms": ("<=", 5.0),
    "replay_events_per_s": (">=", 100_000),
    "blender_ratio": ("<=", 1.15),
    "requester_cpu_ms_per_frame": ("<=", 2.0),
    "requester_kb_per_friend": ("<=", 50.0),
}


def _machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(), "kernel": platform.release()}


def _safe(name: str, fn, *args, **kwargs) -> dict:
    t0 = time.perf_counter()
    print(f"... {name}", file=sys.stderr, flush=True)
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one failed benchmark must not lose the others
        traceback.print_exc()
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"    {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--only", choices=("requester_load",), help="run this benchmark alone and update its figures in --out")
    parser.add_argument("--requester-friends", type=int, help="simulated friends for requester_load (default: 1,000; --quick: 100)")
    args = parser.parse_args()
    q = args.quick
    started = time.perf_counter()
    if args.only:
        res = json.loads(args.out.read_text()) if args.out.is_file() else {"quick": q, "machine": _machine()}
        _requester_load(res, q, args.requester_friends)
        res[args.only + "_command"] = " ".join(["python bench/run.py", *sys.argv[1:]])
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        _table(res)
        return
    res: dict = {"quick": q, "machine": _machine(), "command": "python bench/run.py" + (" --quick" if q else "")}

    # efficiency: M frames on N friends, modelled 200 ms a frame, verification on
    frames = 48 if q else 240
    ns = (2, 8) if q else (2, 8, 32)
    runs = {n: _safe(f"efficiency N={n}", efficiency.run, friends=n, frames=frames, seconds=0.2, startup=0.05) for n in ns}
    main_run = runs[8]
    res["efficiency"] = {
        "value": main_run.get("efficiency"),
        "params": {"frames": frames, "friends": 8, "seconds_per_frame": 0.2, "startup_seconds": 0.05, "backend": "modelled", "checks_per_friend": 1},
        "by_n": {str(n): r for n, r in runs.items()},
    }
    res["verify_overhead"] = {
        "value": main_run.get("verify_overhead"),
        "params": {"frames": frames, "friends": 8, "what": "(test frames + arbitrations) / M"},
        "test_frames": main_run.get("test_frames"),
        "arbitrations": main_run.get("arbitrations"),
        "backup_frames": main_run.get("frames_assigned_by_kind", {}).get("backup", 0),
    }

    # transfer: a large .blend and many small frames, vs plain TLS on loopback
    size_mb = 64 if q else 512
    blend = _safe("transfer (.blend)", transfer.run, size_mb)
    count = 40 if q else 200
    frames_t = _safe("transfer (frames)", frames_transfer.run, count)
    res["transfer_ratio"] = {
        "value": min(blend.get("frender_put", {}).get("vs_tls", 0), blend.get("frender_get", {}).get("vs_tls", 0),
                     *(frames_t.get(k, {}).get("ratio_vs_tls", 0) for k in ("160x90", "1920x1080"))),
        "blend_put_vs_tls": blend.get("frender_put", {}).get("vs_tls"),
        "blend_get_vs_tls": blend.get("frender_get", {}).get("vs_tls"),
        "frames_160x90_vs_tls": frames_t.get("160x90", {}).get("ratio_vs_tls"),
        "frames_1920x1080_vs_tls": frames_t.get("1920x1080", {}).get("ratio_vs_tls"),
        "params": {"blend_mb": size_mb, "frames": count, "frame_sizes": ["160x90", "1920x1080"], "what": "worst of the four ratios"},
        "blend": blend,
        "frames": frames_t,
    }

    # master capacity
    load = _safe(
        "master load", master_load.run,
        friends=1000 if q else 5000, workers=2 if q else 4, sessions_per_worker=6 if q else 12,
        steady_s=5.0 if q else 15.0, ramp=(2.0,) if q else (1.5, 2.0, 3.0, 4.0), step_s=4.0 if q else 8.0,
    )
    res["heartbeats_per_s"] = {
        "value": load.get("heartbeats_per_s"),
        "held": load.get("steady_held"),
        "sustained_max": load.get("sustained_max_heartbeats_per_s"),
        "master_cpu_us_per_heartbeat": load.get("master_cpu_us_per_heartbeat"),
        "params": load.get("params"),
        "detail": load,
    }
    res["assign_p50_ms"] = {"value": load.get("assign_p50_ms"), "params": load.get("params")}
    res["assign_p99_ms"] = {"value": load.get("assign_p99_ms"), "params": load.get("params")}
    if not q:  # the same with the master's log at synchronous=NORMAL: what an fsync per ask costs
        normal = _safe("master load, sync normal", master_load.run, friends=5000, workers=4, sessions_per_worker=12,
                       steady_s=15.0, ramp=(), sync="normal")
        res["assign_p99_ms"]["sync_normal"] = {k: normal.get(k) for k in ("assign_p50_ms", "assign_p99_ms", "heartbeats_per_s", "steady_held")}

    # replay
    n_events = 100_000 if q else 1_000_000
    rep = _safe("replay", replay.run, n_events)
    res["replay_events_per_s"] = {"value": rep.get("replay_events_per_s"), "params": {"events": n_events}, "detail": rep}

    # real Blender
    bframes = 12 if q else 48
    br = _safe("blender ratio", blender_ratio.run, frames=bframes)
    res["blender_ratio"] = {"value": br.get("blender_ratio"), "params": br.get("params", {"frames": bframes}), "detail": br}

    _requester_load(res, q, args.requester_friends)

    res["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    if not q:
        _plot(runs, HERE.parent / "docs" / "efficiency.png")
    _table(res)


def _requester_load(res: dict, quick: bool, friends: int | None) -> None:
    """One requester, simulated friends over real TLS, 1920x1080 frames: CPU per frame, memory per friend."""
    params = dict(requester_load.QUICK if quick else requester_load.FULL)
    if friends is not None:
        params["friends"] = friends
    # Where the requester's CPU goes, when py-spy is installed (pip install py-spy): its top entries land in the results.
    profile = Path(tempfile.mkdtemp(prefix="frender-profile-")) / "requester.raw" if shutil.which("py-spy") else None
    rl = _safe("requester load", requester_load.run, **params, profile=profile)
    res["requester_cpu_ms_per_frame"] = {
        "value": rl.get("requester_cpu_ms_per_frame"),
        "accepted_frames_per_s": rl.get("accepted_frames_per_s"),
        "offered_frames_per_s": rl.get("offered_frames_per_s"),
        "final_frames_per_s": rl.get("final_frames_per_s"),
        "delivery_to_final_p99_ms": rl.get("delivery_to_final_p99_ms"),
        "cpu_s_in_window": rl.get("cpu_s_in_window"),
        "params": rl.get("params"),
        "detail": rl,
    }
    res["requester_kb_per_friend"] = {"value": rl.get("requester_kb_per_friend"), "params": rl.get("params")}


def _plot(runs: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install '.[bench]'): no plot", file=sys.stderr)
        return
    ns = sorted(n for n, r in runs.items() if "efficiency" in r)
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    ax.plot(ns, [runs[n]["efficiency"] for n in ns], "o-", label="fRender (modelled 200 ms/frame)")
    ax.axhline(0.95, color="grey", linestyle="--", label="target 0.95")
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


def _table(res: dict) -> None:
    rows = []
    keys = ("efficiency", "verify_overhead", "transfer_ratio", "heartbeats_per_s", "assign_p50_ms", "assign_p99_ms", "replay_events_per_s", "blender_ratio")
    for key in keys + ("requester_cpu_ms_per_frame", "requester_kb_per_friend"):
        if key not in res:
            continue
        value = res[key].get("value")
        target = TARGETS.get(key)
        if target is None or value is None:
            verdict = ""
        else:
            ok = value >= target[1] if target[0] == ">=" else value <= target[1]
            verdict = f"{target[0]} {target[1]:g}: {'met' if ok else 'MISSED'}"
        if key == "heartbeats_per_s":
            hb = res[key]
            offered = hb["params"]["friends"] if hb.get("params") else "?"
            verdict = f"{offered}/s offered: {'held' if hb.get('held') else 'NOT held'}; sustained max {hb.get('sustained_max')}/s"
        rows.append((key, value, verdict))
    if "by_n" in res.get("efficiency", {}):
        for n, r in res["efficiency"]["by_n"].items():
            rows.append((f"  efficiency N={n}", r.get("efficiency"), f"{r.get('actual_s')} s vs ideal {r.get('ideal_s')} s"))
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'value':>12}  target")
    for name, value, verdict in rows:
        print(f"{name:<{width}}  {value!s:>12}  {verdict}")
    print(f"wrote bench/results.json ({res.get('seconds', '?')} s)")


if __name__ == "__main__":
    main()
