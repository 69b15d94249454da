"""The requester at scale: one real requester, ~1,000 simulated friends rendering 1920x1080 frames.

Processes on 127.0.0.1:

- the real master (``python -m frender run master``);
- the real requester: ``run_requester`` in a process of its own (this file
  with ``--serve-requester``), so its CPU and memory are its alone. It renders
  its own frames (checks without a verifier, arbitrations) with a modelled
  backend that writes the same image the friends send;
- a few load-generator processes (this file with ``--worker``), each holding
  a few hundred simulated friends. Every friend is a user of its own with its
  own key, and speaks the real protocol over real TLS exactly as
  ``frender run friend`` does: it registers with the master and heartbeats it
  (an idle friend's heartbeat waits at the master for a job), takes the
  master-signed assignment from a heartbeat reply, dials the requester,
  fetches the job's .blend, pulls tasks with ``WantWork`` (asking ahead while
  a task's last frame "renders"), and sends each frame over one ``FileLink``
  while the next renders. Rendering is modelled: 2 s a frame on a fixed
  schedule, like Blender.

The frames are a real 1920x1080 RGBA PNG, made once with numpy and Pillow: a
ray-cast scene of shaded spheres on a perspective checkerboard under a sky
gradient, with soft shadows, a vignette and the faint noise a denoised
path-traced frame keeps (about 2.6 MB at Pillow's default compression). Like
Blender's PNGs, each copy carries its own metadata (a ``tEXt`` render time),
so honest copies differ byte-wise and agree on pixels: every check is a real
pixel comparison, as between honest friends. The requester verifies them as
configured by default: on arrival each frame's container and size only; every
frame crop-checked (a 1/16 window of it rendered by another friend, and by the
requester's own renderer for spot checks and arbitrations), each comparison
decoding the frame and the crop in the requester's worker processes. A crop
task is answered with the window's pixels of the same image (made once per box).

The driver (this file) starts everything, trusts the requester and grants
points as the master's operator, uploads a scene and submits jobs of at most
``max_friends`` friends each (the requester's limit) until every friend has
one, then measures over a window after a warm-up:

- accepted frames per second: frames final (accepted for the client) in the
  window, from the requester's log; copies received (check copies included)
  beside it;
- requester CPU per accepted frame: the event loop's own (the CPU of the
  requester's main thread, where trio runs, from /proc/PID/task/PID/stat) and
  the total (every thread of the requester and its comparison workers), each
  over the window / copies accepted in it; the master's and the load
  generators' CPU over the same window say who else took the cores;
- p50/p99 from delivery to final: per frame, from the commit of the copy
  that became final to the ``FramesFinal`` that made it so (both in the log);
- memory per friend: the requester's RSS at the end of the window minus its
  RSS before any friend dialled it, divided by the friends.

    python bench/requester_load.py --friends 1000 --workers 4
    python bench/requester_load.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender.apps import messages as msg  # noqa: E402
from frender.apps import requester as _shell_events  # noqa: E402,F401  (registers the requester's log events)
from frender.apps.client import create_account, operator_call  # noqa: E402
from frender.apps.demo import Cluster, start_master  # noqa: E402
from frender.apps.requester import NEW_JOBS, RequesterSettings, run_requester  # noqa: E402
from frender.blender import ModelledBackend, RenderedFrame, frame_name, window_name  # noqa: E402
from frender.blender._modelled import MODELLED_PROFILE, window_seconds  # noqa: E402
from frender.core import job as core  # noqa: E402
from frender.store import SqliteLog, events  # noqa: E402
from frender.transports import (  # noqa: E402
    Address,
    FileLink,
    Identity,
    Limits,
    PeerGone,
    RemoteError,
    check_assignment,
    connect,
    put_file,
)
from frender.transports.messages import FileHeader  # noqa: E402

WIDTH, HEIGHT = 1920, 1080
VARIANTS = 16  # distinct files of the same pixels (metadata differs), as honest friends' copies are
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# Each friend keeps an RPC session and a FileLink to the requester: the default 1,024 connections serve 512 friends.
REQUESTER_LIMITS = Limits(max_connections=8192, max_per_host=8192)
CLIENT_LIMITS = Limits()


# ------------------------------------------------------------------ the frame


def scene_pixels(width: int = WIDTH, height: int = HEIGHT, seed: int = 7):
    """A rendered-looking RGBA image: shaded spheres with soft shadows on a checkerboard, sky, vignette, faint noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (x - width / 2) / height
    v = (height / 2 - y) / height
    horizon = 0.08
    t = np.clip((v - horizon) / 0.5, 0, 1)[..., None]
    sky = (1 - t) * np.array([0.85, 0.88, 0.92], np.float32) + t * np.array([0.32, 0.5, 0.8], np.float32)
    below = v < horizon
    depth = np.where(below, 0.6 / np.maximum(horizon - v, 1e-3), 0)
    checker = ((np.floor(u * depth * 1.5) + np.floor(depth * 1.5)) % 2)[..., None]
    ground = np.where(checker > 0, np.array([0.62, 0.6, 0.55], np.float32), np.array([0.28, 0.27, 0.25], np.float32))
    fog = np.clip(depth / 40, 0, 1)[..., None]
    ground = ground * (1 - fog) + fog * np.array([0.85, 0.88, 0.92], np.float32)
    img = np.where(below[..., None], ground, sky)
    light = np.array([-0.5, 0.7, 0.5])
    light /= np.linalg.norm(light)
    spheres = [(-0.55, -0.12, 0.22, (0.8, 0.2, 0.15)), (0.05, -0.05, 0.3, (0.2, 0.5, 0.85)), (0.6, -0.16, 0.18, (0.85, 0.75, 0.2)),
               (-0.15, -0.3, 0.09, (0.3, 0.8, 0.35)), (0.35, -0.33, 0.07, (0.9, 0.9, 0.9))]
    for cx, cy, r, colour in sorted(spheres, key=lambda s: s[2]):
        d2 = ((u - cx - 0.25 * r) / (1.6 * r)) ** 2 + ((v - (cy - r * 0.95)) / (0.35 * r)) ** 2
        shadow = np.clip(1 - d2, 0, 1) ** 1.5 * 0.55
        img = img * (1 - (shadow * below)[..., None])
        dx, dy = (u - cx) / r, (v - cy) / r
        inside = dx * dx + dy * dy < 1
        dz = np.sqrt(np.clip(1 - dx * dx - dy * dy, 0, 1))
        lambert = np.clip(dx * light[0] + dy * light[1] + dz * light[2], 0, 1)
        spec = np.clip(2 * lambert * dz - light[2], 0, 1) ** 40
        col = np.array(colour) * (0.12 + 0.88 * lambert)[..., None] + 0.6 * spec[..., None]
        col += (1 - dz)[..., None] ** 3 * 0.25 * np.array([0.6, 0.7, 0.9])
        edge = np.clip((1 - np.sqrt(dx * dx + dy * dy)) * r * height, 0, 1)  # an antialiased rim
        img = np.where(inside[..., None], img * (1 - edge[..., None]) + col * edge[..., None], img)
    img = img * (1 - 0.25 * (u * u + v * v))[..., None]
    img = img + rng.normal(0, 0.004, img.shape)
    rgb = (np.clip(img, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
    return np.concatenate([rgb, np.full((height, width, 1), 255, np.uint8)], axis=2)


def frame_png() -> bytes:
    """The benchmark's frame, made once and kept in the temp dir (making it takes seconds)."""
    from PIL import Image

    cached = Path(tempfile.gettempdir()) / f"frender-bench-frame-{WIDTH}x{HEIGHT}-v1.png"
    if cached.is_file():
        return cached.read_bytes()
    buffer = io.BytesIO()
    Image.fromarray(scene_pixels(), "RGBA").save(buffer, "PNG")  # Pillow's default compression (zlib level 6)
    data = buffer.getvalue()
    part = cached.with_suffix(f".{os.getpid()}.part")
    part.write_bytes(data)
    os.replace(part, cached)
    return data


def with_text(png: bytes, key: str, value: str) -> bytes:
    """The PNG with a tEXt chunk after IHDR: other bytes, the same pixels (Blender stamps render times so)."""
    data = key.encode("latin-1") + b"\0" + value.encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    return png[:33] + chunk + png[33:]  # signature (8) + IHDR (25)


def write_variants(folder: Path) -> list[dict]:
    """VARIANTS copies of the frame with different metadata, with their sizes and sha256s."""
    folder.mkdir(parents=True, exist_ok=True)
    png = frame_png()
    out = []
    for i in range(VARIANTS):
        data = with_text(png, "RenderTime", f"00:02.{i:02d}")
        path = folder / f"v{i:02d}.png"
        path.write_bytes(data)
        out.append({"path": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return out


class Crops:
    """Crop renders of the frame, as a friend's Blender makes them for a crop check: the box's pixels of the frame (so
    they agree with every honest copy), made once per box and kept as files."""

    def __init__(self, image: Path, folder: Path) -> None:
        self.image = image
        self.folder = folder
        self._pixels = None
        self.made: dict[tuple[int, int, int, int], dict] = {}

    def of(self, left: int, top: int, width: int, height: int) -> dict:
        """The crop's file, size and sha256."""
        key = (left, top, width, height)
        if key not in self.made:
            from PIL import Image

            if self._pixels is None:
                with Image.open(self.image) as image:
                    self._pixels = np.asarray(image.convert("RGBA"))
            buffer = io.BytesIO()
            Image.fromarray(self._pixels[top:top + height, left:left + width].copy(), "RGBA").save(buffer, "PNG", compress_level=1)
            data = buffer.getvalue()
            path = self.folder / f"crop-{left}-{top}-{width}x{height}.png"
            self.folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.made[key] = {"path": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return self.made[key]


class BenchBackend(ModelledBackend):
    """The requester's own renderer here: modelled time (a window's share of a frame's, as real Blender's crops take),
    and the friends' image or its crop (so its checks agree)."""

    def __init__(self, seconds_per_frame: float, image: Path, frames: int, crops: Path) -> None:
        super().__init__(seconds_per_frame, resolution=(WIDTH, HEIGHT), frame_range=(1, frames))
        self.image = image
        self.crops = Crops(image, crops)

    async def render(self, blend, job_dir, frames, *, threads=None, limits=None, on_frame=None, window=None):  # type: ignore[override]
        out_dir = job_dir / "out"
        out_dir.mkdir(parents=True, exist_ok=True)
        done = []
        seconds = self.seconds_per_frame
        if window is not None:
            seconds = window_seconds(seconds, window.width * window.height / (WIDTH * HEIGHT))
        for frame in frames:
            await trio.sleep(seconds)
            if window is None:
                path = out_dir / frame_name(frame)
                shutil.copyfile(self.image, path)
            else:
                path = out_dir / window_name(frame)
                crop = await trio.to_thread.run_sync(self.crops.of, window.left, window.top, window.width, window.height)
                shutil.copyfile(crop["path"], path)
            done.append(RenderedFrame(frame=frame, path=path, seconds=seconds, window=window))
            if on_frame is not None:
                await on_frame(done[-1])
        return done


# ------------------------------------------------------ the requester process


def serve_requester(args: argparse.Namespace) -> None:
    """One real requester, as ``frender run requester`` starts it, with room for every friend's connections."""
    settings = RequesterSettings(
        # The checks ``frender run requester`` runs: its rules for new jobs (NEW_JOBS) and its admission (own_backlog).
        job=core.JobSettings(seconds_per_frame=args.seconds, startup_seconds=args.startup, **NEW_JOBS),
        max_friends=args.max_friends,
        # Friends granted together dial in together: a thousand TLS handshakes on two shared cores take longer than
        # the default 5 s of silence after which a friend that never asked for work counts as gone.
        friend_silence=args.friend_silence,
        own_renders_at_once=args.own_renders,
    )
    backend = BenchBackend(args.seconds, Path(args.image), frames=10_000, crops=args.home / "bench-crops")
    backend.crops.of(0, 0, 8, 8)  # the frame's pixels decoded once, before the idle RSS is read

    def announce(line: str) -> None:
        print(line, file=sys.stderr)
        if " listening at frender://" not in line:  # other news (the dashboard, the master's trust) names no address
            return
        address = line.split(" at ", 1)[1].split()[0]
        part = args.address_file.with_suffix(".part")
        part.write_text(address + "\n")
        os.replace(part, args.address_file)

    # The log's commits, counted where they happen (on the event loop): how many frames one fsync carries.
    commits = {"appends": 0, "events": 0, "seconds": 0.0}
    append = SqliteLog.append

    def counted_append(self, batch):
        t0 = time.perf_counter()
        try:
            return append(self, batch)
        finally:
            commits["appends"] += 1
            commits["events"] += len(batch)
            commits["seconds"] += time.perf_counter() - t0

    SqliteLog.append = counted_append  # type: ignore[method-assign]

    async def tell_commits() -> None:
        out = args.home / "bench-commits.json"
        while True:
            part = out.with_suffix(".part")
            part.write_text(json.dumps(commits))
            os.replace(part, out)
            await trio.sleep(0.5)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tell_commits)
            await run_requester(
                master=Address.parse(args.master), host="127.0.0.1", port=0, db=args.db, home=args.home,
                backend=backend, settings=settings, limits=REQUESTER_LIMITS, announce=announce,
            )

    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass


# ----------------------------------------------------------- load generator


class _Stats:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.put_latency: list[float] = []
        self.window = (math.inf, math.inf)  # trio times


class SimFriend:
    """One simulated friend: the real messages of ``frender run friend``, with a modelled 2-second render."""

    def __init__(self, *, index: int, user: str, identity: Identity, master: Address, variants: list[dict], seconds: float,
                 home: Path, stats: _Stats, dialling: trio.Semaphore, crops: Crops) -> None:
        self.dialling = dialling
        self.crops = crops
        self.index = index
        self.user = user
        self.friend = f"{user}/box"
        self.identity = identity
        self.master = master
        self.variants = variants
        self.seconds = seconds
        self.home = home
        self.stats = stats
        self.jobs: set[int] = set()
        self.finished: set[int] = set()
        self.last_done: int | None = None
        self.registered = False
        self.fetched = False

    async def live(self, registered: trio.Semaphore | None, nursery: trio.Nursery) -> None:
        """Register, then heartbeat; an assignment starts a worker for its job. A lost master is redialled with backoff, as friends do."""
        delay = 0.1
        while True:
            try:
                await self._live(registered, nursery)
            except (PeerGone, OSError, trio.TooSlowError) as exc:
                self.stats.counts[f"master redial: {type(exc).__name__}"] += 1
            except RemoteError as exc:
                self.stats.counts[f"master error: {exc.code}"] += 1
                if registered is not None and not self.registered:
                    self.registered = True
                    registered.release()
                return
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _live(self, registered: trio.Semaphore | None, nursery: trio.Nursery) -> None:
        async with connect(self.master, self.identity, limits=CLIENT_LIMITS) as session:
            await session.call(msg.CreateAccount(user=self.user))  # an account is a key: the friend's user binds its name first
            reply = await session.call(msg.RegisterFriend(user=self.user, name="box", profile=MODELLED_PROFILE, capacity=1))
            every = max(reply.heartbeat_every, 0.05)
            first = True
            while True:
                sent = trio.current_time()
                wait = 0.0 if (self.jobs or first) else every
                beat = await session.call(msg.Heartbeat(friend=self.friend, busy=False, last_done=self.last_done, wait=wait))
                if first and registered is not None and not self.registered:
                    self.registered = True
                    registered.release()
                first = False
                signed = beat.assignment
                if signed is not None:
                    job = signed.assignment.job
                    if job not in self.jobs and job not in self.finished:
                        requester = Address.parse(beat.requester)
                        check_assignment(signed, master_fingerprint=self.master.fingerprint, now=time.time(),
                                         friend_key=self.identity.fingerprint, requester_key=requester.fingerprint)
                        self.jobs.add(job)
                        nursery.start_soon(self.work, job, signed, requester)
                await trio.sleep_until(sent + every)

    async def work(self, job: int, signed, requester: Address) -> None:
        """Work on the job until it is over for this friend; a lost link is redialled with backoff, as friends do."""
        delay = 0.1
        try:
            while not await self._connected(job, signed, requester):
                self.stats.counts["redials"] += 1
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
        except* RemoteError as group:
            for exc in group.exceptions:
                self.stats.counts[f"refused: {getattr(exc, 'code', '?')}"] += 1
        finally:
            self.jobs.discard(job)
            self.finished.add(job)
            self.last_done = job

    async def _connected(self, job: int, signed, requester: Address) -> bool:
        """Take tasks over one connection until the job is over (True) or the link fails (False).

        Frames leave in order over one FileLink while the next renders; a task
        whose frames did not all leave is given up by the next WantWork.
        """
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with self.dialling:  # a few handshakes at a time per generator: a thousand at once time out on two shared cores
                    session = await stack.enter_async_context(connect(requester, self.identity, limits=CLIENT_LIMITS))
                    link = await stack.enter_async_context(FileLink(requester, self.identity))
                    if not self.fetched:
                        blend = self.home / f"{self.user}-{job}.blend"
                        await link.get(FileHeader(kind="blend", job=job, sha256=signed.assignment.blend_sha256), blend, max_size=1 << 20)
                        blend.unlink()
                        self.fetched = True
                unsent: Counter[int] = Counter()

                async def want(rendering: int | None = None):
                    keeping = set(unsent) | ({rendering} if rendering is not None else set())
                    self.stats.counts["want_work"] += 1
                    return await session.call(msg.WantWork(assignment=signed, keeping=tuple(sorted(keeping))))

                send, receive = trio.open_memory_channel[tuple[int, int, object]](4)  # the real friend's outbox holds 4
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.deliver, job, link, receive, unsent)
                    async with send:
                        reply = await want()
                        while True:
                            if isinstance(reply, msg.NoWork):
                                if reply.over:
                                    return True
                                await trio.sleep(max(reply.retry_after, 0.01))
                                reply = await want()
                                continue
                            ahead: list[object] = []
                            begin = trio.current_time()
                            box = reply.window  # a crop check: the box alone, in a window's share of a frame's time
                            seconds = self.seconds if box is None else window_seconds(self.seconds, box.width * box.height / (WIDTH * HEIGHT))
                            for i, frame in enumerate(reply.frames):
                                if i == len(reply.frames) - 1:  # the last frame renders: ask ahead (Rule 9)
                                    nursery.start_soon(self._ask_ahead, want, reply.task, ahead)
                                await trio.sleep_until(begin + (i + 1) * seconds)
                                unsent[reply.task] += 1
                                await send.send((reply.task, frame, box))
                            while not ahead:
                                await trio.sleep(0.01)
                            reply = ahead[0]
                            if isinstance(reply, msg.NoWork) and not reply.over:
                                reply = await want()
        except* (PeerGone, OSError, trio.TooSlowError) as group:
            for exc in group.exceptions:
                self.stats.counts[f"link lost: {type(exc).__name__}: {str(exc)[:60]}"] += 1
        return False

    @staticmethod
    async def _ask_ahead(want, task: int, ahead: list[object]) -> None:
        ahead.append(await want(rendering=task))

    async def deliver(self, job: int, link: FileLink, frames, unsent: Counter[int]) -> None:
        async for task, frame, box in frames:
            if box is None:
                variant = self.variants[(self.index * 7 + frame) % len(self.variants)]
            else:
                variant = self.crops.of(box.left, box.top, box.width, box.height)
                self.stats.counts["crops_sent"] += 1
            header = FileHeader(kind="frame", job=job, frame=frame, size=variant["size"], sha256=variant["sha256"])
            t0 = trio.current_time()
            try:
                reply = await link.put(header, Path(variant["path"]))
            except RemoteError:
                self.stats.counts["put_refused"] += 1
            else:
                self.stats.counts["put_ok" if getattr(reply, "ok", False) else "put_not_ok"] += 1
                if self.stats.window[0] <= t0 < self.stats.window[1]:
                    self.stats.put_latency.append(trio.current_time() - t0)
            finally:
                unsent[task] -= 1
                if unsent[task] <= 0:
                    del unsent[task]


async def _worker(args: argparse.Namespace) -> dict:
    master = Address.parse(args.master)
    variants = json.loads(Path(args.variants).read_text())
    home = args.home / f"w{args.worker}"
    home.mkdir(parents=True, exist_ok=True)
    stats = _Stats()
    dialling = trio.Semaphore(8)
    crops = Crops(Path(variants[0]["path"]), home / "crops")
    friends = []
    for i in range(args.friends):
        user = f"rl{args.worker}x{i}"
        friends.append(SimFriend(index=args.worker * 100_000 + i, user=user, identity=Identity.load_or_create(home / user), master=master,
                                 variants=variants, seconds=args.seconds, home=home, stats=stats, dialling=dialling,
                                 crops=crops))
    registered = trio.Semaphore(0, max_value=len(friends))
    out: dict = {}
    async with trio.open_nursery() as nursery:
        opening = trio.Semaphore(8)  # registrations in flight to the master at once, per generator

        async def start(friend: SimFriend) -> None:
            async with opening:
                gate = trio.Semaphore(0)
                nursery.start_soon(friend.live, gate, nursery)
                await gate.acquire()
            registered.release()

        for friend in friends:
            nursery.start_soon(start, friend)
        for _ in friends:
            await registered.acquire()
        print(json.dumps({"ready": len(friends)}), flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        t0_wall, t1_wall = json.loads(line)
        offset = trio.current_time() - time.time()
        stats.window = (t0_wall + offset, t1_wall + offset)
        await trio.sleep_until(stats.window[0])
        cpu0 = time.process_time()
        await trio.sleep_until(stats.window[1])
        out["cpu_s"] = time.process_time() - cpu0
        nursery.cancel_scope.cancel()
    out["counts"] = dict(stats.counts)
    out["put_latency"] = stats.put_latency
    return out


# -------------------------------------------------------------------- driver


def _cpu_of(pid: int, stat: str = "stat") -> float:
    fields = Path(f"/proc/{pid}/{stat}").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: every thread of the process (of the one thread: task/TID/stat)


def _commits_of(cluster: Cluster) -> dict:
    path = cluster.root / "homes" / "requester" / "bench-commits.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"appends": 0, "events": 0, "seconds": 0.0}


def _rss_parts_of(pid: int) -> dict[str, float]:
    """The requester's resident memory by kind, in MB: anonymous (its heap), file-backed (libraries, mapped frames)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: round(int(fields[k].split()[0]) / 1024, 1) for k in ("RssAnon", "RssFile") if k in fields}


def _loop_cpu_of(pid: int) -> float:
    """The event loop's own CPU: the requester runs trio on its main thread, whose id is the process's."""
    return _cpu_of(pid, f"task/{pid}/stat")


def _descendants(pid: int) -> list[int]:
    """Every live process under ``pid`` (the comparison pool's fork server and workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _tree_cpu_of(pid: int) -> tuple[float, float]:
    """(CPU of ``pid`` and every live process under it, RSS of those under it): the requester with its pool workers."""
    cpu, rss = _cpu_of(pid), 0
    for child in _descendants(pid):
        try:
            cpu += _cpu_of(child)
            rss += _rss_of(child)
        except OSError:
            continue
    return cpu, rss


def _rss_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def _start_requester(cluster: Cluster, master: Address, image: Path, *, seconds: float, startup: float, max_friends: int,
                     friend_silence: float, own_renders: int = 1) -> Address:
    home = cluster.root / "homes" / "requester"
    home.mkdir(parents=True, exist_ok=True)
    address_file = home / "address"
    args = [sys.executable, __file__, "--serve-requester", "--master", str(master), "--home", str(home),
            "--db", str(cluster.root / "requester.db"), "--address-file", str(address_file), "--image", str(image),
            "--seconds", str(seconds), "--startup", str(startup), "--max-friends", str(max_friends), "--friend-silence", str(friend_silence),
            "--own-renders", str(own_renders)]
    with open(cluster.logs / "requester.log", "ab") as log:
        cluster.procs["requester"] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return cluster.wait_for_address("requester", address_file)


async def _submit_jobs(requester: Address, home: Path, scene: Path, sizes: list[int], frames_per_job: int) -> list[int]:
    """Upload the scene, then submit every job over one session, opened before any friend dials the requester (a fresh
    handshake per job competed with a thousand friends' for the requester's CPU, and lost)."""
    identity = Identity.load_or_create(home)
    data = scene.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    await put_file(requester, identity, FileHeader(kind="upload", job=sha, size=len(data), sha256=sha), scene)
    jobs: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(connect(requester, identity))
        for n in sizes:
            for attempt in range(120):
                try:
                    reply = await session.call(msg.Submit(user="artist", blend_sha256=sha, frames=tuple(range(1, frames_per_job + 1)), friends=n))
                    break
                except RemoteError as exc:  # friends not live yet, or the master too busy to answer the requester's ask in time
                    if exc.code not in ("no-friends", "master-unreachable") or attempt == 119:
                        raise
                except PeerGone:
                    if attempt == 119:
                        raise
                    await stack.aclose()
                    session = await stack.enter_async_context(connect(requester, identity))
                await trio.sleep(1.0)
            jobs.append(reply.job)
    return jobs


def run(friends: int = 1000, workers: int = 4, seconds: float = 2.0, warmup: float = 60.0, window: float = 60.0, max_friends: int = 64,
        startup: float = 5.0, friend_silence: float = 120.0, profile: Path | None = None, keep: Path | None = None,
        own_renders: int = 1) -> dict:
    """One measured run; returns the figures."""
    root = Path(tempfile.mkdtemp(prefix="frender-rload-")) if keep is None else keep
    if keep is not None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    cluster = Cluster(root)
    procs: list[subprocess.Popen] = []
    sizes = [min(max_friends, friends - k) for k in range(0, friends, max_friends)]
    # Enough frames that no job runs dry before the window ends, whatever the pace.
    frames_per_job = min(10_000, max(8, math.ceil(max(sizes) * (warmup + window) / seconds * 1.5)))
    timeline: list[tuple[float, float, int]] = []
    try:
        variants = write_variants(root / "frames")
        (root / "variants.json").write_text(json.dumps(variants))
        master, master_home = start_master(cluster, friend_timeout_ms=20_000)  # heartbeats every 5 s: the master stays light
        master_pid = cluster.procs["master"].pid
        requester = _start_requester(cluster, master, Path(variants[0]["path"]), seconds=seconds, startup=startup, max_friends=max_friends,
                                     friend_silence=friend_silence, own_renders=own_renders)
        rpid = cluster.procs["requester"].pid

        async def operate() -> None:
            await operator_call(master, master_home, msg.Trust(key=requester.fingerprint, name="bench-requester"))
            artist = await create_account(master, root / "homes" / "artist", "artist")
            await operator_call(master, master_home, msg.Grant(user="artist", key=artist.key, amount=10**9, reason="bench"))

        trio.run(operate)
        per = [friends // workers + (1 if w < friends % workers else 0) for w in range(workers)]
        t_start = time.perf_counter()
        for w in range(workers):
            with open(cluster.logs / f"worker{w}.log", "ab") as errors:
                procs.append(subprocess.Popen(
                    [sys.executable, __file__, "--worker", str(w), "--master", str(master), "--home", str(root / "keys"),
                     "--friends", str(per[w]), "--variants", str(root / "variants.json"), "--seconds", str(seconds)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, stderr=errors,
                ))
        for p in procs:
            assert p.stdout is not None
            if not p.stdout.readline():
                raise RuntimeError(f"a load generator died while registering; see {cluster.logs}")
        register_s = time.perf_counter() - t_start
        time.sleep(1.0)
        rss_idle = _rss_of(rpid)
        rss_idle_parts = _rss_parts_of(rpid)
        scene = root / "scene.blend"
        scene.write_bytes(b"modelled scene: the benchmark's backend never reads it\n")
        t_submit = time.time()
        jobs = trio.run(_submit_jobs, requester, root / "homes" / "artist", scene, sizes, frames_per_job)
        submit_s = time.time() - t_submit
        t0 = time.time() + warmup
        t1 = t0 + window
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(json.dumps([t0, t1]) + "\n")
            p.stdin.flush()
        pids = {"requester": rpid, "master": master_pid, **{f"worker{w}": p.pid for w, p in enumerate(procs)}}
        while time.time() < t0:
            time.sleep(0.05)
        cpu0 = {name: _cpu_of(pid) for name, pid in pids.items()}
        loop0, (tree0, _) = _loop_cpu_of(rpid), _tree_cpu_of(rpid)
        commits0 = _commits_of(cluster)
        if profile is not None:  # every thread's stacks over the window: decoding runs in worker threads, out of cProfile's sight
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(rpid), "--threads", "--rate", "50", "--duration", str(int(window)),
                                    "--format", "raw", "--output", str(profile)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(spy)
        while time.time() < t1:
            timeline.append((time.time(), _cpu_of(rpid), _rss_of(rpid)))
            time.sleep(min(1.0, max(t1 - time.time(), 0.0)))
        cpu1 = {name: _cpu_of(pid) for name, pid in pids.items()}
        loop1, (tree1, pool_rss) = _loop_cpu_of(rpid), _tree_cpu_of(rpid)
        commits1 = _commits_of(cluster)
        rss_end = _rss_of(rpid)
        rss_end_parts = _rss_parts_of(rpid)
        results = []
        for p in procs[:workers]:
            line = p.stdout.readline() if p.stdout else ""
            results.append(json.loads(line) if line else {"counts": {"generator died": 1}, "put_latency": [], "cpu_s": 0.0})
    finally:
        for p in procs:
            if p.args[0] == "py-spy":
                try:
                    p.wait(timeout=30)  # it writes the profile once its duration is over
                except subprocess.TimeoutExpired:
                    pass
            p.kill()
            p.wait()
        _stop(cluster)
    figures = _from_log(root / "requester.db", t0, t1, jobs)
    cpu = {name: round(cpu1[name] - cpu0[name], 2) for name in cpu0}
    generators_cpu = round(sum(v for k, v in cpu.items() if k.startswith("worker")), 2)
    counts: Counter[str] = Counter()
    latency: list[float] = []
    for r in results:
        counts.update(r["counts"])
        latency.extend(r["put_latency"])
    accepted, final = figures["copies_received"], figures["frames_final"]
    out = {
        "params": {"friends": friends, "workers": workers, "seconds_per_frame": seconds, "warmup_s": warmup, "window_s": window,
                   "max_friends": max_friends, "own_renders": own_renders, "jobs": len(sizes), "frames_per_job": frames_per_job, "startup_seconds": startup,
                   "friend_silence_s": friend_silence,
                   "frame": f"{WIDTH}x{HEIGHT} RGBA PNG, {variants[0]['size']} bytes",
                   "checks": "frender run requester's: crop checks on every frame (a 1/16 window), every window of a friend below "
                             "reputation 16 rendered by the requester itself (spots), admission at 60 s of own renders owed",
                   "cpus": os.cpu_count()},
        "offered_frames_per_s": round(friends / seconds, 1),
        "accepted_frames_per_s": round(accepted / window, 2),
        "final_frames_per_s": round(final / window, 2),
        "requester_loop_ms_per_frame": round((loop1 - loop0) / accepted * 1000, 2) if accepted else None,
        "requester_cpu_ms_per_frame": round((tree1 - tree0) / accepted * 1000, 2) if accepted else None,
        "requester_cpu_ms_per_final_frame": round((tree1 - tree0) / final * 1000, 2) if final else None,
        "requester_cpu_cores": round((tree1 - tree0) / window, 2),
        "requester_loop_cores": round((loop1 - loop0) / window, 2),
        "delivery_to_final_p50_ms": figures["delivery_to_final_p50_ms"],
        "delivery_to_final_p99_ms": figures["delivery_to_final_p99_ms"],
        "put_p50_ms": round(_pct(latency, 0.5) * 1000, 1) if latency else None,
        "put_p99_ms": round(_pct(latency, 0.99) * 1000, 1) if latency else None,
        "requester_rss_idle_mb": round(rss_idle / 2**20, 1),
        "requester_rss_end_mb": round(rss_end / 2**20, 1),
        "requester_rss_peak_mb": round(max([rss_end, *(r for _, _, r in timeline)]) / 2**20, 1),
        "requester_kb_per_friend": round((rss_end - rss_idle) / friends / 1024, 1),
        "requester_rss_by_kind_mb": {"idle": rss_idle_parts, "end": rss_end_parts},
        "log_commits": {  # group commit: one transaction (one fsync) per append
            "per_s": round((commits1["appends"] - commits0["appends"]) / window, 1),
            "copies_per_commit": round(accepted / max(commits1["appends"] - commits0["appends"], 1), 2),
            "events_per_commit": round((commits1["events"] - commits0["events"]) / max(commits1["appends"] - commits0["appends"], 1), 2),
            "loop_ms_per_commit": round((commits1["seconds"] - commits0["seconds"]) * 1000 / max(commits1["appends"] - commits0["appends"], 1), 2),
        },
        "comparison_workers_rss_mb": round(pool_rss / 2**20, 1),
        "cpu_s_in_window": {**{k: v for k, v in cpu.items() if not k.startswith("worker")}, "requester_loop": round(loop1 - loop0, 2),
                            "requester_with_workers": round(tree1 - tree0, 2), "load_generators": generators_cpu},
        "cores_used_in_window": round((sum(cpu.values()) - cpu["requester"] + tree1 - tree0) / window, 2),
        "machine_load_avg_1min": round(os.getloadavg()[0], 2),
        "register_s": round(register_s, 1),
        "submit_s": round(submit_s, 1),
        "friends_working": figures["friends_working"],
        "comparisons": figures["comparisons"],
        "log_in_window": figures["events"],
        "generators": dict(counts),
    }
    if profile is not None and profile.is_file():
        out["profile"] = profile_top(profile)
    if keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return out


# Where a sampled thread waits rather than runs (py-spy counts some timed lock waits as busy).
_WAITS = ("_thread_cache.py:211", "_files.py:243", "threading.py:327", "threading.py:331", "_io_epoll.py:243", "threading.py:324")


def profile_top(path: Path, count: int = 12) -> dict:
    """The requester's busiest code in a py-spy raw profile, as shares of its on-CPU samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = []
        for f in stack.split(";"):
            if not f.endswith(")") or f.startswith(("thread ", "process ")):
                continue
            name, _, where = f[:-1].rpartition(" (")
            frames.append((name, where.rsplit("/", 1)[-1]))
        if not frames or frames[-1][1].endswith(_WAITS):
            continue
        busy += int(n)
        own[f"{frames[-1][0]} ({frames[-1][1]})"] += int(n)
        for name, where in {(name, where.split(":")[0]) for name, where in frames}:
            if not name.startswith(("Thread.", "WorkerThread.", "capture", "to_thread_run_sync", "<module>", "run", "main", "unrolled_run")):
                inclusive[f"{name} ({where})"] += int(n)
    return {"samples_on_cpu": busy,
            "own": {f: round(n / busy, 3) for f, n in own.most_common(count)},
            "inclusive": {f: round(n / busy, 3) for f, n in inclusive.most_common(count)}}


def _stop(cluster: Cluster) -> None:
    cluster.stop_together(list(cluster.procs), grace=20)


def _from_log(db: Path, t0: float, t1: float, jobs: list[int]) -> dict:
    """What the requester committed in the window: copies, final frames and how long finality took."""
    log = SqliteLog(db, create=False)
    try:
        evs = [e for _, e in events(log)]
    finally:
        log.close()
    delivered: dict[tuple[int, int, str], float] = {}  # (job, frame, sha256) -> when its copy was committed
    copies = 0
    final = 0
    to_final: list[float] = []
    kinds: Counter[str] = Counter()
    working: set[tuple[int, str]] = set()
    for e in evs:
        now = getattr(e, "now", None)
        inside = now is not None and t0 <= now < t1
        if inside:
            kinds[type(e).__name__] += 1
        if isinstance(e, core.CopyReceived):
            delivered.setdefault((e.job, e.frame, e.sha256), e.now)
            if inside:
                copies += 1
                working.add((e.job, e.friend))
        elif isinstance(e, core.FramesFinal) and inside:
            for f in e.frames:
                final += 1
                at = delivered.get((e.job, f.frame, f.sha256))
                if at is not None:
                    to_final.append(e.now - at)
    p50, p99 = _pct(to_final, 0.5), _pct(to_final, 0.99)
    return {
        "copies_received": copies,
        "frames_final": final,
        "friends_working": len(working),
        "comparisons": kinds.get("ComparisonMade", 0),
        "delivery_to_final_p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
        "delivery_to_final_p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
        "events": dict(kinds),
    }


FULL = {"friends": 1000, "workers": 4, "warmup": 60.0, "window": 60.0}
QUICK = {"friends": 100, "workers": 2, "warmup": 30.0, "window": 20.0}
TINY = {"friends": 2, "workers": 1, "warmup": 3.0, "window": 5.0, "max_friends": 2}  # every step, in seconds (tests/bench)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--friends", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4, help="load-generator processes")
    parser.add_argument("--seconds", type=float, default=2.0, help="modelled render time per frame")
    parser.add_argument("--warmup", type=float, default=45.0)
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--max-friends", type=int, default=64, help="friends per job (the requester's limit)")
    parser.add_argument("--startup", type=float, default=5.0, help="the requester's Blender start-up estimate (task sizes, deadlines)")
    parser.add_argument("--own-renders", type=int, default=1, help="the requester's own renders at once (frender run requester --own-renders)")
    parser.add_argument("--friend-silence", type=float, default=120.0, help="the requester's friend_silence (its default is 5 s)")
    parser.add_argument("--quick", action="store_true", help=f"a short run: {QUICK}")
    parser.add_argument("--profile", type=Path, help="sample the requester's threads with py-spy into this file (raw format)")
    parser.add_argument("--keep", type=Path, help="keep the run's logs and databases here")
    parser.add_argument("--serve-requester", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--address-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--variants", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_requester:
        serve_requester(args)
        return
    if args.worker is not None:
        print(json.dumps(trio.run(_worker, args)), flush=True)
        return
    kwargs = {"friends": args.friends, "workers": args.workers, "warmup": args.warmup, "window": args.window}
    if args.quick:
        kwargs.update(QUICK)
    print(json.dumps(run(**kwargs, seconds=args.seconds, max_friends=args.max_friends, startup=args.startup, friend_silence=args.friend_silence,
                         profile=args.profile, own_renders=args.own_renders,
                         keep=args.keep), indent=2))


if __name__ == "__main__":
    main()
