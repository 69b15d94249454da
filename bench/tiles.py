"""A still in tiles: one frame on N friends, against one friend rendering it whole, checks on.

Real processes on 127.0.0.1 (a master, a requester, N friends), rendering with
the modelled Blender (``--blender modelled:SECONDS:WxH:1-1``): a render of a
window costs its share of the frame's SECONDS plus a fixed start-up
(``frender.blender._modelled.window_seconds``, fitted to real Blender at
1920x1080: 1.58% of a frame). So a tile of 1/8 of the frame costs 13.9% of
the frame, and a crop check of 1/16 of that tile 2.3%. The images written are
WxH (default 480x270: the cost model is 1080p's, the pixels a quarter each way,
so that PNG work on a small machine does not stand in for render time).

    speedup(N) = T(1) / T(N), T = wall time from submit to the frame in the artist's folder
    T(1)       = one friend renders the frame whole (its crop check goes to the requester)
    T(N)       = N friends render it in tiles (one tile each: COLSxROWS = N), every tile crop-checked

    python bench/tiles.py --friends 1 2 4 8 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from efficiency import _bounded, farm_homes, start_modelled_farm, stop_all_at_once  # noqa: E402
from frender.apps.client import submit  # noqa: E402
from frender.apps.demo import Cluster  # noqa: E402
from frender.apps import requester as _shell_events  # noqa: E402,F401  (registers its log events)
from frender.blender import ModelledBackend  # noqa: E402
from frender.blender._modelled import WINDOW_STARTUP  # noqa: E402
from frender.core import job as core  # noqa: E402
from frender.store import SqliteLog, events  # noqa: E402

GRIDS = {1: "", 2: "2x1", 3: "3x1", 4: "2x2", 6: "3x2", 8: "4x2", 9: "3x3", 12: "4x3", 16: "4x4"}


def grid_for(friends: int) -> str:
    """One tile a friend: the grid of ``friends`` tiles nearest a 16:9 frame's shape ("" for one friend: whole)."""
    if friends not in GRIDS:
        raise ValueError(f"no grid of {friends} tiles here; pick one of {sorted(GRIDS)}")
    return GRIDS[friends]


def run(friends: int, *, seconds: float = 8.0, startup: float = 0.25, resolution: tuple[int, int] = (480, 270), tiles: str | None = None,
        own_renders: int = 1, deadline: float = 300.0) -> dict:
    """One still on ``friends`` modelled friends, in ``tiles`` (default: one tile a friend); its figures."""
    grid = grid_for(friends) if tiles is None else tiles
    root = Path(tempfile.mkdtemp(prefix="frender-tiles-"))
    try:
        return _run(root, friends, grid, seconds, startup, resolution, own_renders, deadline)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(
    root: Path, friends: int, grid: str, seconds: float, startup: float, resolution: tuple[int, int], own_renders: int, deadline: float
) -> dict:
    width, height = resolution
    spec = f"modelled:{seconds}:{width}x{height}:1-1"
    cluster = Cluster(root)
    homes = farm_homes(root, friends)
    try:
        # the requester renders ``own_renders`` of its own checks side by side
        requester, scene = start_modelled_farm(
            cluster, homes, friends, spec=spec, seconds=seconds, startup=startup, extra=("--own-renders", str(own_renders))
        )
        wall0, t0 = time.time(), time.perf_counter()
        result = trio.run(
            lambda: _bounded(deadline, submit(
                scene, requester=requester, user="artist", home=homes["artist"], friends=friends, out=root / "frames", frames=(1,),
                poll=0.05, tiles=grid, backend=ModelledBackend(seconds, resolution=resolution, frame_range=(1, 1)),
            ))
        )
        actual = time.perf_counter() - t0
    finally:
        stop_all_at_once(cluster)
    assert result.files and result.files[0].is_file(), "the frame did not reach the artist's folder"
    return {
        "params": {"friends": friends, "tiles": grid or "whole", "seconds_per_frame": seconds, "startup_seconds": startup,
                   "resolution": f"{width}x{height}", "window_startup": WINDOW_STARTUP, "own_renders_at_once": own_renders},
        "actual_s": round(actual, 3),
        "tiles_final": result.progress.tiles_final,
        "evictions": list(result.progress.evictions),
        **_from_log(root / "requester.db", wall0),
    }


def _from_log(db: Path, wall0: float) -> dict:
    """When the tiles were delivered and final, and how many check renders friends and the requester did."""
    log = SqliteLog(db, create=False)
    try:
        evs = [e for _, e in events(log)]
    finally:
        log.close()
    copies = [e for e in evs if isinstance(e, core.CopyReceived)]
    own = [e for e in evs if isinstance(e, core.OwnRenderRequested)]
    return {
        "timeline": timeline(evs, wall0),
        "last_tile_delivered_after_s": round(max((e.now for e in copies if e.role != "check"), default=wall0) - wall0, 3),
        "last_final_after_s": round(max((e.now for e in evs if isinstance(e, core.FramesFinal)), default=wall0) - wall0, 3),
        "friend_checks": sum(1 for e in copies if e.role == "check"),
        "own_check_renders": sum(1 for e in own if e.purpose == "check"),
    }


def timeline(evs: list, wall0: float) -> list[str]:
    """Where the time went, in seconds after submit: each task (friend, kind, units: handed out -> delivered), each
    check drawn (its subject, whether the requester renders it), the requester's own renders and each tile final."""
    delivered = {e.task: e.now for e in evs if isinstance(e, core.CopyReceived)}
    own_done = {e.check: e.now for e in evs if isinstance(e, core.OwnRenderReceived)}
    lines = []
    for e in evs:
        if isinstance(e, core.TaskAssigned):
            end = f"{delivered[e.task] - wall0:7.3f}" if e.task in delivered else "      -"
            lines.append(f"{e.now - wall0:7.3f} -> {end}  {e.friend:<10} {e.kind.value} {list(e.frames)} {list(e.checks) or ''}")
        elif isinstance(e, core.ChecksDrawn):
            lines.append(f"{e.now - wall0:7.3f}  checks {e.first_check}.. of {e.subject} {list(e.tests)}, the requester's {list(e.own)}")
        elif isinstance(e, core.OwnRenderRequested):
            end = f"{own_done[e.check] - wall0:7.3f}" if e.check in own_done else "      -"
            lines.append(f"{e.now - wall0:7.3f} -> {end}  requester {e.purpose.value} of check {e.check} ({e.frame})")
        elif isinstance(e, core.FramesFinal):
            lines.append(f"{e.now - wall0:7.3f}  final {[f.frame for f in e.frames]}")
    return lines


def sweep(ns: tuple[int, ...] = (1, 2, 4, 8), **kwargs: object) -> dict:
    """T(N) for each N, and the speed-up T(1) / T(N) (N=1 is always run: the baseline)."""
    runs = {n: run(n, **kwargs) for n in sorted({1, *ns})}  # type: ignore[arg-type]
    base = runs[1]["actual_s"]
    for n, r in runs.items():
        r["speedup"] = round(base / r["actual_s"], 2)
        r["speedup_per_friend"] = round(base / r["actual_s"] / n, 3)
    return {str(n): r for n, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--friends", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=8.0, help="the whole frame's modelled render time")
    parser.add_argument("--startup", type=float, default=0.25, help="the requester's start-up estimate per task (deadlines only)")
    parser.add_argument("--resolution", default="480x270")
    parser.add_argument("--own-renders", type=int, default=1, help="the requester's own check renders side by side")
    parser.add_argument("--timeline", action="store_true", help="print each task's friend, kind and times")
    args = parser.parse_args()
    w, h = (int(x) for x in args.resolution.split("x"))
    figures = sweep(tuple(args.friends), seconds=args.seconds, startup=args.startup, resolution=(w, h), own_renders=args.own_renders)
    if not args.timeline:
        for r in figures.values():
            r.pop("timeline")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
