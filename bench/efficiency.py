"""Parallel efficiency: M frames on N friend processes with a modelled render time, verification on.

Real processes on 127.0.0.1: a master, a requester and N friends, each
``python -m frender run ...``; the friends and the requester render with
``--blender modelled:SECONDS:160x90:1-M`` (sleep per frame, write a real PNG),
so the requester's own renders (checks, arbitrations) match the friends'. A
crop check's window takes its measured share of a frame (a fixed start-up
plus its area, ``frender.blender._modelled.window_seconds``: 7.9% of a frame
for a window of 1/16, as real Blender at 1920x1080), so the figures are what
an artist of 1080p frames waits for, on frames small enough for 2 cores.

    efficiency             = (M x SECONDS / N) / actual: what the artist waits for, checks are overhead
    efficiency_with_checks = ((M + check work) x SECONDS / N) / actual: the farm's own use of the friends
    actual                 = wall time from submit to the last frame final at the client
    cpu_bound_efficiency   = ideal / (CPU seconds of every process / cores): what the machine's cores allow, when the
                             farm's own work (N friends, requester, master, client on one machine) fills them

Check work is every check render done (friends' windows and the requester's
own), each in frames' worth of its modelled cost, read from requester.db.

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
from frender.blender import ModelledBackend  # noqa: E402
from frender.apps.demo import Cluster, _accounts, _operate, start_master, wait_for_friends  # noqa: E402
from frender.transports import Address  # noqa: E402
from frender.apps import requester as _shell_events  # noqa: E402,F401  (registers its log events)
from frender.blender._modelled import WINDOW_STARTUP, window_seconds  # noqa: E402
from frender.core import job as core  # noqa: E402
from frender.store import SqliteLog, events  # noqa: E402

RESOLUTION = (160, 90)


def start_modelled_requester(cluster: Cluster, master, *, spec: str, seconds_per_frame: float, startup_seconds: float, extra: tuple[str, ...] = (),
                             name: str = "requester"):
    """A requester rendering with the modelled Blender: its log ``NAME.db``, its home ``homes/NAME`` (a farm may run several)."""
    home = cluster.root / "homes" / name
    home.mkdir(parents=True, exist_ok=True)
    address_file = home / "address"
    address_file.unlink(missing_ok=True)
    cluster.start(
        name, "run", "requester", "--master", str(master), "--listen", "127.0.0.1:0",
        "--db", str(cluster.root / f"{name}.db"), "--home", str(home), "--address-file", str(address_file),
        "--blender", spec, "--seconds-per-frame", str(seconds_per_frame), "--startup-seconds", str(startup_seconds),
        "--max-per-host", "4096",  # every process of a local farm is 127.0.0.1
        *extra,
    )
    return cluster.wait_for_address(name, address_file)


def farm_homes(root: Path, friends: int) -> dict[str, Path]:
    """The homes of a bench farm's users: friend1..N and the artist."""
    return {f"friend{i + 1}": root / "homes" / f"friend{i + 1}" for i in range(friends)} | {"artist": root / "homes" / "artist"}


def start_modelled_farm(
    cluster: Cluster, homes: dict[str, Path], friends: int, *, spec: str, seconds: float, startup: float, extra: tuple[str, ...] = ()
) -> tuple[Address, Path]:
    """A master, a modelled requester (``extra``: more of its options) and ``friends`` modelled friends, every account
    bound and funded and the requester trusted, each friend heartbeating; the requester's address and a scene to submit."""
    master, master_home = start_master(cluster)
    requester = start_modelled_requester(cluster, master, spec=spec, seconds_per_frame=seconds, startup_seconds=startup, extra=extra)
    keys = trio.run(_accounts, master, homes)  # accounts are keys: each user binds its name before points are granted
    trio.run(_operate, master, master_home, requester, keys)
    for i in range(friends):
        start_modelled_friend(cluster, master, i + 1, spec=spec)
    trio.run(wait_for_friends, master, master_home, friends, 120.0)
    time.sleep(0.5)  # let every friend's first heartbeat settle
    scene = cluster.root / "scene.blend"
    scene.write_bytes(b"modelled scene: the modelled backend never reads it\n")
    return requester, scene


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


def cpu_seconds(cluster: Cluster) -> dict[str, float]:
    """CPU seconds (user + system, all threads) each process of the cluster has used so far, and this one's."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, proc in cluster.procs.items():
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    usage = os.times()
    out["client"] = usage.user + usage.system
    return out


def _cpu_in_job(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each role used between submit and the last frame: requester, master, friends (together), client."""
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    return {
        "requester": round(used.get("requester", 0.0), 2),
        "master": round(used.get("master", 0.0), 2),
        "friends": round(sum(v for k, v in used.items() if k.startswith("friend")), 2),
        "client": round(used.get("client", 0.0), 2),
    }


def stop_all_at_once(cluster: Cluster, grace: float = 10.0) -> None:
    """SIGINT every process at once, then kill what is left."""
    cluster.stop_together(list(cluster.procs), grace=grace)


def run(friends: int = 8, frames: int = 240, seconds: float = 0.2, startup: float = 0.05, checks: int = 1, keep: Path | None = None,
        deadline: float = 300.0, tiles: str = "", own_renders: int = 1) -> dict:
    """One job of ``frames`` frames on ``friends`` modelled friends; returns the figures (TooSlowError after ``deadline`` s).
    ``tiles`` ("2x2"): each frame in tiles, whole frames handed out until the tail; ``own_renders``: the requester's own
    check renders side by side."""
    root = Path(tempfile.mkdtemp(prefix="frender-eff-")) if keep is None else keep
    if keep is not None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    try:
        return _run(root, friends, frames, seconds, startup, checks, deadline, tiles, own_renders)
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def _run(root: Path, friends: int, frames: int, seconds: float, startup: float, checks: int, deadline: float, tiles: str, own_renders: int) -> dict:
    spec = f"modelled:{seconds}:{RESOLUTION[0]}x{RESOLUTION[1]}:1-{frames}"
    cluster = Cluster(root)
    homes = farm_homes(root, friends)
    try:
        requester, scene = start_modelled_farm(
            cluster, homes, friends, spec=spec, seconds=seconds, startup=startup, extra=("--own-renders", str(own_renders))
        )
        cpu0 = cpu_seconds(cluster)
        wall0, t0 = time.time(), time.perf_counter()
        result = trio.run(
            lambda: _bounded(deadline, submit(
                scene, requester=requester, user="artist", home=homes["artist"], friends=friends,
                out=root / "frames", frames=tuple(range(1, frames + 1)), checks_per_friend=checks, poll=0.05, tiles=tiles,
                backend=ModelledBackend(seconds, resolution=RESOLUTION, frame_range=(1, frames)),  # the artist's check, modelled too
            ))
        )
        actual = time.perf_counter() - t0
        cpu = _cpu_in_job(cpu0, cpu_seconds(cluster))
        time.sleep(0.3)
    finally:
        stop_all_at_once(cluster)
    figures = _from_log(root / "requester.db", wall0, seconds, tiles)
    ideal = frames * seconds / friends
    ideal_checks = (frames + figures["check_work_frames"]) * seconds / friends
    out = {
        "params": {"friends": friends, "frames": frames, "seconds_per_frame": seconds, "startup_seconds": startup, "checks_per_friend": checks,
                   "resolution": f"{RESOLUTION[0]}x{RESOLUTION[1]}", "window_startup": WINDOW_STARTUP, "cpus": os.cpu_count(),
                   **({"tiles": tiles} if tiles else {}), **({"own_renders_at_once": own_renders} if own_renders != 1 else {})},
        "frames_received": len(result.frames),
        "ideal_s": round(ideal, 3),
        "ideal_with_checks_s": round(ideal_checks, 3),
        "actual_s": round(actual, 3),
        "efficiency": round(ideal / actual, 3),
        "efficiency_with_checks": round(ideal_checks / actual, 3),
        "load_average": round(os.getloadavg()[0], 2),
        "cpu_s_in_job": cpu,
        # Every process's CPU over the machine's cores is a floor under the wall time: the efficiency this machine allows.
        "cpu_bound_efficiency": round(ideal / max(sum(cpu.values()) / (os.cpu_count() or 1), ideal), 3),
        **figures,
    }
    out["verify_overhead"] = round(figures["check_work_frames"] / frames, 4)
    return out


def _from_log(db: Path, wall0: float, seconds: float, tiles: str = "") -> dict:
    """What the requester's log says happened: check renders and their cost, backups, and when."""
    log = SqliteLog(db, create=False)
    try:
        evs = [e for _, e in events(log)]
    finally:
        log.close()
    grid = next((e.settings.tiles for e in evs if isinstance(e, core.JobStarted)), None)
    cost = check_costs(evs, seconds, RESOLUTION, grid)
    unit = 1.0 if grid is None else window_seconds(seconds, 1 / grid.count) / seconds  # a tile's render, in frames
    roles = Counter(e.role for e in evs if isinstance(e, core.CopyReceived))
    check_copies = [e for e in evs if isinstance(e, core.CopyReceived) and e.role == "check"]
    own = [e for e in evs if isinstance(e, core.OwnRenderRequested)]
    kinds: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    for e in evs:
        if isinstance(e, core.TaskAssigned):
            kinds[e.kind] += len(e.frames)
            tasks[e.kind] += 1
    first_task = min((e.now for e in evs if isinstance(e, core.TaskAssigned)), default=wall0)
    last_copy = max((e.now for e in evs if isinstance(e, core.CopyReceived) and e.role in ("candidate", "pair")), default=wall0)
    last_check = max((e.now for e in evs if isinstance(e, core.CopyReceived) and e.role == "check"), default=wall0)
    last_final = max((e.now for e in evs if isinstance(e, core.FramesFinal)), default=wall0)
    dropped = Counter(e.why for e in evs if isinstance(e, core.TaskDropped))
    friend_checks = sum(cost.get(e.check, 1.0) for e in check_copies if e.check is not None)
    end = max((e.now for e in evs if isinstance(e, core.FramesFinal)), default=wall0)
    own_checks = sum(cost.get(e.check, 1.0) for e in own if e.purpose == "check")
    return {
        "check_copies": len(check_copies),
        "own_check_renders": sum(1 for e in own if e.purpose == "check"),
        "arbitrations": sum(1 for e in own if e.purpose == "arbitration"),
        "check_work_frames": round(friend_checks + own_checks, 2),
        "own_check_work_frames": round(own_checks, 2),
        "copies_by_role": dict(roles),
        "frames_assigned_by_kind": dict(kinds),
        "tasks_by_kind": dict(tasks),
        "tasks_dropped": dict(dropped),
        "first_task_after_s": round(first_task - wall0, 3),
        "last_frame_delivered_after_s": round(last_copy - wall0, 3),
        "last_check_delivered_after_s": round(last_check - wall0, 3),
        "last_frame_final_at_requester_after_s": round(last_final - wall0, 3),
        "per_friend_s": _where_time_went(evs, seconds, cost, end, unit),
    }


def check_costs(evs: list, seconds: float, resolution: tuple[int, int], grid: core.TileGrid | None = None) -> dict[int, float]:
    """Each check's cost in frames, from a requester's log: a crop check's window by its modelled time (area plus the
    fixed start-up ``window_seconds`` charges), a whole test frame 1; in a job in tiles, a window is drawn in its tile."""
    width, height = resolution
    if grid is not None:  # a tile of about 1/count of the frame: its windows are in its own pixels
        width, height = max(1, width // grid.cols), max(1, height // grid.rows)
    cost: dict[int, float] = {}
    for e in evs:
        if isinstance(e, core.ChecksDrawn):
            for i in range(len(e.tests)):
                if i < len(e.windows):
                    _, _, w, h = e.windows[i].pixels(width, height)
                    area = w * h / (width * height) / (1 if grid is None else grid.count)
                    cost[e.first_check + i] = window_seconds(seconds, area) / seconds
                else:
                    cost[e.first_check + i] = 1.0 if grid is None else window_seconds(seconds, 1 / grid.count) / seconds
    return cost


def _where_time_went(evs: list, seconds: float, cost: dict[int, float], end: float, unit: float = 1.0) -> dict[str, float]:
    """Each friend's time from its first task to the job's last final frame, split up (the mean over friends).

    The time between two of a friend's arrivals is the next one's render plus what the friend spent not rendering:
    ``waits_before_a_check`` and ``waits_before_a_frame`` are those excesses. A friend sends two files side by side, so
    two copies may arrive out of their render order: the split between the two waits is rough, their sum is not.
    """
    by_friend: dict[str, list] = {}
    for e in evs:
        if isinstance(e, (core.TaskAssigned, core.CopyReceived)):
            by_friend.setdefault(e.friend, []).append(e)
    parts: Counter[str] = Counter()
    for es in by_friend.values():
        copies = [e for e in es if isinstance(e, core.CopyReceived)]
        if not copies:
            continue

        def render(copy) -> float:
            return seconds * (cost.get(copy.check, unit) if copy.role == "check" else unit)

        first = next(e for e in es if isinstance(e, core.TaskAssigned))
        parts["rendering_frames"] += sum(render(c) for c in copies if c.role != "check")
        parts["rendering_checks"] += sum(render(c) for c in copies if c.role == "check")
        parts["start"] += copies[0].now - first.now - render(copies[0])
        for a, b in zip(copies, copies[1:]):
            parts["waits_before_a_check" if b.role == "check" else "waits_before_a_frame"] += b.now - a.now - render(b)
        parts["end"] += end - copies[-1].now
    return {k: round(v / max(len(by_friend), 1), 3) for k, v in sorted(parts.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--friends", type=int, default=8)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=0.2)
    parser.add_argument("--startup", type=float, default=0.05)
    parser.add_argument("--tiles", default="", help="COLSxROWS: every frame in tiles, whole frames handed out until the tail")
    parser.add_argument("--own-renders", type=int, default=1, help="the requester's own check renders side by side")
    parser.add_argument("--keep", type=Path, help="keep the run's logs and databases here")
    args = parser.parse_args()
    print(json.dumps(run(args.friends, args.frames, args.seconds, args.startup, keep=args.keep, tiles=args.tiles, own_renders=args.own_renders), indent=2))


if __name__ == "__main__":
    main()
