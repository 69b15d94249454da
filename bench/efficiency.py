"""Parallel efficiency: M frames on N friend processes with a modelled render time, verification on.

Real processes on 127.0.0.1: a master, a requester and N friends, each
``python -m frender run ...``; the friends and the requester render with
``--blender modelled:SECONDS:160x90:1-M`` (sleep per frame, write a real PNG),
so the requester's own renders (checks, arbitrations) match the friends'.

    ideal  = (M + test frames) x SECONDS / N
    actual = wall time from submit to the last frame final at the client
    efficiency = ideal / actual

Test frames are the check renders actually done (friends' check copies plus
the requester's own check renders), read from requester.db after the run.

    python bench/efficiency.py --friends 8 --frames 240 --seconds 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender.apps.client import submit  # noqa: E402
from frender.apps.demo import Cluster, _operate, start_master, wait_for_friends  # noqa: E402
from frender.apps import requester as _shell_events  # noqa: E402,F401  (registers its log events)
from frender.core import job as core  # noqa: E402
from frender.store import SqliteLog, events  # noqa: E402


def start_modelled_requester(cluster: Cluster, master, *, spec: str, seconds_per_frame: float, startup_seconds: float):
    home = cluster.root / "homes" / "requester"
    home.mkdir(parents=True, exist_ok=True)
    address_file = home / "address"
    address_file.unlink(missing_ok=True)
    cluster.start(
        "requester", "run", "requester", "--master", str(master), "--listen", "127.0.0.1:0",
        "--db", str(cluster.root / "requester.db"), "--home", str(home), "--address-file", str(address_file),
        "--blender", spec, "--seconds-per-frame", str(seconds_per_frame), "--startup-seconds", str(startup_seconds),
        "--max-per-host", "4096",  # every process of a local farm is 127.0.0.1
    )
    return cluster.wait_for_address("requester", address_file)


def start_modelled_friend(cluster: Cluster, master, index: int, *, spec: str) -> None:
    name = f"friend{index}"
    cluster.start(
        name, "run", "friend", "--master", str(master), "--user", name, "--name", "box", "--threads", "1",
        "--home", str(cluster.root / "homes" / name), "--blender", spec,
    )


async def _bounded(seconds: float, coroutine):
    """The coroutine's result, or TimeoutError after ``seconds`` (a crashed requester would make submit retry forever)."""
    with trio.fail_after(seconds):
        return await coroutine


def stop_all_at_once(cluster: Cluster, grace: float = 10.0) -> None:
    """SIGINT every process at once, then kill what is left."""
    cluster.stop_together(list(cluster.procs), grace=grace)


def run(friends: int = 8, frames: int = 240, seconds: float = 0.2, startup: float = 0.05, checks: int = 1, keep: Path | None = None) -> dict:
    """One job of ``frames`` frames on ``friends`` modelled friends; returns the figures."""
    root = Path(tempfile.mkdtemp(prefix="frender-eff-")) if keep is None else keep
    if keep is not None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    spec = f"modelled:{seconds}:160x90:1-{frames}"
    cluster = Cluster(root)
    try:
        master, master_home = start_master(cluster)
        requester = start_modelled_requester(cluster, master, spec=spec, seconds_per_frame=seconds, startup_seconds=startup)
        trio.run(_operate, master, master_home, requester)
        for i in range(friends):
            start_modelled_friend(cluster, master, i + 1, spec=spec)
        trio.run(wait_for_friends, master, master_home, friends, 120.0)
        time.sleep(0.5)  # let every friend's first heartbeat settle
        scene = root / "scene.blend"
        scene.write_bytes(b"modelled scene: the modelled backend never reads it\n")
        wall0, t0 = time.time(), time.perf_counter()
        result = trio.run(
            lambda: _bounded(300.0, submit(
                scene, requester=requester, user="artist", home=root / "homes" / "artist", friends=friends,
                out=root / "frames", frames=tuple(range(1, frames + 1)), checks_per_friend=checks, poll=0.05,
            ))
        )
        actual = time.perf_counter() - t0
        time.sleep(0.3)
    finally:
        stop_all_at_once(cluster)
    figures = _from_log(root / "requester.db", wall0)
    test_frames = figures["check_copies"] + figures["own_check_renders"]
    ideal = (frames + test_frames) * seconds / friends
    out = {
        "params": {"friends": friends, "frames": frames, "seconds_per_frame": seconds, "startup_seconds": startup, "checks_per_friend": checks,
                   "cpus": os.cpu_count()},
        "frames_received": len(result.frames),
        "test_frames": test_frames,
        "ideal_s": round(ideal, 3),
        "actual_s": round(actual, 3),
        "efficiency": round(ideal / actual, 3),
        **figures,
    }
    out["verify_overhead"] = round((test_frames + figures["arbitrations"]) / frames, 4)
    if keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _from_log(db: Path, wall0: float) -> dict:
    """What the requester's log says happened: check renders, backups, and when."""
    log = SqliteLog(db, create=False)
    try:
        evs = [e for _, e in events(log)]
    finally:
        log.close()
    roles = Counter(e.role for e in evs if isinstance(e, core.CopyReceived))
    kinds: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    for e in evs:
        if isinstance(e, core.TaskAssigned):
            kinds[e.kind] += len(e.frames)
            tasks[e.kind] += 1
    own = Counter(e.purpose for e in evs if isinstance(e, core.OwnRenderRequested))
    first_task = min((e.now for e in evs if isinstance(e, core.TaskAssigned)), default=wall0)
    last_copy = max((e.now for e in evs if isinstance(e, core.CopyReceived) and e.role in ("candidate", "pair")), default=wall0)
    last_final = max((e.now for e in evs if isinstance(e, core.FramesFinal)), default=wall0)
    dropped = Counter(e.why for e in evs if isinstance(e, core.TaskDropped))
    return {
        "check_copies": roles.get("check", 0),
        "own_check_renders": own.get("check", 0),
        "arbitrations": own.get("arbitration", 0),
        "copies_by_role": dict(roles),
        "frames_assigned_by_kind": dict(kinds),
        "tasks_by_kind": dict(tasks),
        "tasks_dropped": dict(dropped),
        "first_task_after_s": round(first_task - wall0, 3),
        "last_frame_delivered_after_s": round(last_copy - wall0, 3),
        "last_frame_final_at_requester_after_s": round(last_final - wall0, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--friends", type=int, default=8)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=0.2)
    parser.add_argument("--startup", type=float, default=0.05)
    parser.add_argument("--keep", type=Path, help="keep the run's logs and databases here")
    args = parser.parse_args()
    print(json.dumps(run(args.friends, args.frames, args.seconds, args.startup, keep=args.keep), indent=2))


if __name__ == "__main__":
    main()
