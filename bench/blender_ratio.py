"""Real Blender: the demo scene through fRender vs one direct Blender run with the same total threads.

fRender: a master, a requester and 2 friends of 1 thread each (real Blender
through the bpy backend, the default), verification on; timed from submit to
the last frame at the client. Direct: one Blender process rendering the same
frames with 2 threads. Both in the same run, on the same scene
(``build_demo_scene(frames=48)``: 160x90, 16 samples).

Also timed, to tell fRender's cost from the machine's: the same frames split
between 2 direct Blender processes of 1 thread each, side by side, with no
fRender at all (``direct_pair_s``). ``farm_vs_pair`` is fRender's own share.

    python bench/blender_ratio.py --frames 48
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender import blender  # noqa: E402
from frender.apps.client import submit  # noqa: E402
from efficiency import _bounded  # noqa: E402
from frender.apps.demo import Cluster, _accounts, _operate, start_friend, start_master, start_requester, wait_for_friends  # noqa: E402


def run(frames: int = 48, friends: int = 2, seconds_per_frame: float = 1.0, startup_seconds: float = 5.0, keep: Path | None = None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="frender-blender-")) if keep is None else keep
    if keep is not None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    try:
        scene = root / "scene.blend"
        blender.build_demo_scene(scene, frames=frames, resolution=(160, 90), samples=16)
        chosen = tuple(range(1, frames + 1))

        # Direct: one process, all the threads the farm gets in total.
        work = root / "direct"
        work.mkdir()
        shutil.copyfile(scene, work / "scene.blend")
        backend = blender.find_backend()
        t0 = time.perf_counter()
        # No address-space cap: plain Blender has none, and 48 frames in one bpy process exceed the runner's default 8 GiB of *virtual* memory.
        limits = blender.Limits(wall_seconds=3600.0, memory_bytes=None)
        trio.run(lambda: blender.render(backend, work / "scene.blend", work, chosen, threads=friends, limits=limits))
        direct = time.perf_counter() - t0

        # The machine's own cost of 2 single-thread processes: the same frames, half each, side by side.
        async def pair() -> None:
            async with trio.open_nursery() as nursery:
                for i in range(friends):
                    half = root / f"direct{i}"
                    half.mkdir()
                    shutil.copyfile(scene, half / "scene.blend")
                    nursery.start_soon(lambda h=half, part=chosen[i::friends]: blender.render(
                        backend, h / "scene.blend", h, part, threads=1, limits=blender.Limits(wall_seconds=3600.0, memory_bytes=None)))

        t0 = time.perf_counter()
        trio.run(pair)
        direct_pair = time.perf_counter() - t0

        cluster = Cluster(root)
        try:
            master, master_home = start_master(cluster)
            requester = start_requester(cluster, master, seconds_per_frame=seconds_per_frame, startup_seconds=startup_seconds)
            homes = {f"friend{i + 1}": root / "homes" / f"friend{i + 1}" for i in range(friends)} | {"artist": root / "homes" / "artist"}
            keys = trio.run(_accounts, master, homes)
            trio.run(_operate, master, master_home, requester, keys)
            for i in range(friends):
                start_friend(cluster, master, i + 1, threads=1)
            trio.run(wait_for_friends, master, master_home, friends, 120.0)
            time.sleep(0.5)
            t0 = time.perf_counter()
            result = trio.run(
                lambda: _bounded(300.0, submit(scene, requester=requester, user="artist", home=homes["artist"], friends=friends,
                               out=root / "frames", frames=chosen, poll=0.05))
            )
            farm = time.perf_counter() - t0
        finally:
            cluster.stop_all()
        progress = result.progress
        return {
            "params": {"frames": frames, "friends": friends, "threads_per_friend": 1, "direct_threads": friends, "resolution": "160x90",
                       "samples": 16, "seconds_per_frame": seconds_per_frame, "startup_seconds": startup_seconds, "bpy": _bpy_version()},
            "direct_s": round(direct, 2),
            "direct_pair_s": round(direct_pair, 2),
            "farm_s": round(farm, 2),
            "blender_ratio": round(farm / direct, 3),
            "pair_vs_direct": round(direct_pair / direct, 3),
            "farm_vs_pair": round(farm / direct_pair, 3),
            "checks_resolved": progress.checks,
            "frames_received": len(result.frames),
        }
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def _bpy_version() -> str:
    try:
        import bpy  # noqa: F401

        return bpy.app.version_string
    except Exception:  # noqa: BLE001
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--keep", type=Path, help="keep the run's logs and databases here")
    args = parser.parse_args()
    print(json.dumps(run(args.frames, keep=args.keep), indent=2))


if __name__ == "__main__":
    main()
