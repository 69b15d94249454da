"""Master capacity: thousands of simulated friends heartbeating while a requester asks for friends.

The master is the real process (``python -m frender run master``) on
127.0.0.1. Worker processes (this file with ``--worker``) simulate the
friends over the real transport (TLS, key proof, msgpack RPC). One RPC
session per simulated friend would need thousands of sockets from one host
(the master allows 64 per host), so each worker multiplexes its friends over a
few sessions: one session = one key = one username owning ~100 friends
(``load{w}x{s}/f{i}``); calls on a session are pipelined (at most 32 in
flight, the server's limit). Each heartbeat is a real ``Request`` frame with a
packed ``Heartbeat``, sent when due (beats due at the same moment share a
write); each friend's message is packed once and the usual "nothing held"
reply is recognised by its bytes, so the generators spend little CPU and the
master gets the cores. A simulated friend that receives an assignment reports
that job as done in its next heartbeat, like a friend that finished.

Phases (same start time in every worker):

1. steady: every friend heartbeats once a second (``friends`` heartbeats/s
   offered) while a requester-like client (a trusted key; its submitter has
   points) asks for 8 friends at a time, back to back with a short pause, and
   times each ``AskFriends`` on its own persistent session: assign_p50/p99.
2. ramp: the per-friend rate steps up (x1.5, x2, x3, ...); a step is held when
   the master answered at least 97% of the offered heartbeats within the step
   with no heartbeat waiting for a free in-flight slot (backpressure).

The master's CPU per heartbeat comes from /proc/<pid>/stat (utime+stime)
over each phase; the load generators report their own CPU over each phase
(``generators_cpu_s``), which shares the same cores.

    python bench/master_load.py --friends 5000 --workers 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender import codec  # noqa: E402
from frender.apps import messages as msg  # noqa: E402
from frender.apps.client import create_account, operator_call  # noqa: E402
from frender.apps.demo import Cluster, start_master  # noqa: E402
from frender.core.profile import RenderProfile  # noqa: E402
from frender.transports import Address, Identity, Limits, connect  # noqa: E402
from frender.transports._channel import Channel  # noqa: E402
from frender.transports.client import _dial, _opened  # noqa: E402 - the session's own opening, without its reader
from frender.transports.messages import OpenRpc, Ready, Reply, Request, decode_body, encode_frame  # noqa: E402

PROFILE = RenderProfile(blender_version="5.0.1", build_hash="bench", device="CPU", cpu_class="bench")
MAX_IN_FLIGHT = 32
LIMITS = Limits()
NOTHING_HELD = codec.pack(msg.HeartbeatReply())  # the master's reply to a friend holding no job
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


# ------------------------------------------------------------------ worker


async def _worker(master: Address, home: Path, index: int, friends: int, sessions: int, phases: list[tuple[str, float, float]]) -> dict:
    names = [[] for _ in range(sessions)]
    for i in range(friends):
        names[i % sessions].append(i)
    results: dict[str, dict] = {name: {"done": 0, "lat": [], "errors": 0, "backpressure": 0, "offered": 0} for name, _, _ in phases}
    ready = trio.Event()
    go = trio.Event()
    start_box: list[float] = []
    registered = [0]

    async def one_session(s: int) -> None:
        user = f"load{index}x{s}"
        identity = Identity.load_or_create(home / user)
        await create_account(master, home / user, user)  # accounts are keys: bound before its friends register
        mine = [f"{user}/f{i}" for i in names[s]]
        stream = await _dial(master, LIMITS)
        async with _opened(stream, identity, master.fingerprint, OpenRpc(), LIMITS) as channel:
            await channel.expect(Ready)
            beats = _Beats(channel, mine)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(beats.read_replies)
                await beats.register(user)
                registered[0] += 1
                if registered[0] == sessions:
                    ready.set()
                await go.wait()
                await beats.offer(start_box[0], phases, results)
                await beats.settled.wait()
                nursery.cancel_scope.cancel()

    async def starter() -> None:
        await ready.wait()
        print(json.dumps({"ready": True}), flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        wall_start = float(line)
        start_box.append(trio.current_time() + (wall_start - time.time()))
        go.set()

    async def own_cpu() -> None:
        await go.wait()
        t = start_box[0]
        await trio.sleep_until(t)
        for name, _, seconds in phases:
            c0 = time.process_time()
            t += seconds
            await trio.sleep_until(t)
            results[name]["cpu_s"] = time.process_time() - c0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(starter)
        nursery.start_soon(own_cpu)
        for s in range(sessions):
            nursery.start_soon(one_session, s)
    out = {}
    for name, res in results.items():
        lat = res.pop("lat")
        out[name] = {**res, "p50_ms": round(_pct(lat, 0.5) * 1000, 2), "p99_ms": round(_pct(lat, 0.99) * 1000, 2)}
    return out


class _Beats:
    """One session's friends, heartbeating over one connection as cheaply as a client can.

    The frames are the real ones (``Request`` carrying a packed ``Heartbeat``),
    each friend's message packed once; replies are matched by id, and a reply
    that is the master's "nothing held" is recognised by its bytes instead of
    decoded. At most MAX_IN_FLIGHT calls are outstanding, as the server allows.
    """

    def __init__(self, channel: Channel, friends: list[str]) -> None:
        self.channel = channel
        self.friends = friends
        self.packed = {friend: codec.pack(msg.Heartbeat(friend=friend, busy=False)) for friend in friends}
        self.next_id = 0
        # id -> (sent at, friend, the phase's results, the phase's end)
        self.waiting: dict[int, tuple[float, str, dict, float]] = {}
        self.registering: dict[int, str] = {}
        self.registered = trio.Event()
        self.settled = trio.Event()

    def _frame(self, message: bytes) -> tuple[int, bytes]:
        self.next_id += 1
        return self.next_id, encode_frame(Request(id=self.next_id, message=message))

    async def register(self, user: str) -> None:
        frames = []
        for friend in self.friends:
            id, frame = self._frame(codec.pack(msg.RegisterFriend(user=user, name=friend.split("/")[1], profile=PROFILE, capacity=1)))
            self.registering[id] = friend
            frames.append(frame)
        for i in range(0, len(frames), MAX_IN_FLIGHT):  # within the server's in-flight limit
            while len(self.registering) > len(frames) - i:
                await trio.sleep(0.01)
            await self.channel.send_bytes(b"".join(frames[i : i + MAX_IN_FLIGHT]), LIMITS.message_deadline)
        await self.registered.wait()

    async def offer(self, start: float, phases, results: dict) -> None:
        """Send each friend's heartbeat on its schedule; the beats due together leave in one write."""
        k = 0
        t = start
        for name, rate, seconds in phases:
            res = results[name]
            end = t + seconds
            interval = 1.0 / (rate * len(self.friends))
            while t < end:
                await trio.sleep_until(t)
                now = trio.current_time()
                frames = []
                while t < end and t <= now:
                    friend = self.friends[k % len(self.friends)]
                    k += 1
                    res["offered"] += 1
                    if len(self.waiting) >= MAX_IN_FLIGHT:
                        res["backpressure"] += 1
                    else:
                        id, frame = self._frame(self.packed[friend])
                        self.waiting[id] = (now, friend, res, end)
                        frames.append(frame)
                    t += interval
                if frames:
                    await self.channel.send_bytes(b"".join(frames), LIMITS.message_deadline)
            t = end
        with trio.move_on_after(1.0):
            while self.waiting:
                await trio.sleep(0.05)
        self.settled.set()

    async def read_replies(self) -> None:
        while bodies := await self.channel.receive_bodies():
            now = trio.current_time()
            for body in bodies:
                reply = decode_body(body)
                if reply.id in self.registering:
                    del self.registering[reply.id]
                    if not isinstance(reply, Reply):
                        raise RuntimeError(f"registration refused: {reply}")
                    if not self.registering:
                        self.registered.set()
                    continue
                sent, friend, res, end = self.waiting.pop(reply.id)
                if not isinstance(reply, Reply):
                    res["errors"] += 1
                    continue
                if now <= end + 0.5:
                    res["done"] += 1
                    res["lat"].append(now - sent)
                if reply.message != NOTHING_HELD:
                    answer = codec.unpack(reply.message)
                    if answer.assignment is not None:  # done at once: the next beat says so
                        job = answer.assignment.assignment.job
                        self.packed[friend] = codec.pack(msg.Heartbeat(friend=friend, busy=False, last_done=job))


# -------------------------------------------------------------------- main


def run(friends: int = 5000, workers: int = 4, sessions_per_worker: int = 12, steady_s: float = 10.0,
        ramp: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 5.0, 6.0), step_s: float = 5.0, want: int = 8, sync: str = "full") -> dict:
    root = Path(tempfile.mkdtemp(prefix="frender-load-"))
    cluster = Cluster(root)
    phases = [("steady", 1.0, steady_s)] + [(f"x{m:g}", m, step_s) for m in ramp]
    procs: list[subprocess.Popen] = []
    try:
        master, master_home = start_master(cluster, friend_timeout_ms=2000, sync=sync)
        master_pid = cluster.procs["master"].pid
        asker = Identity.load_or_create(root / "asker")

        async def setup() -> None:
            await operator_call(master, master_home, msg.Trust(key=asker.fingerprint, name="bench-requester"))
            artist = await create_account(master, root / "asker", "artist")  # the asker speaks for the artist with its key
            await operator_call(master, master_home, msg.Grant(user="artist", amount=10**9, reason="bench", key=artist.key))

        trio.run(setup)
        per = [friends // workers + (1 if w < friends % workers else 0) for w in range(workers)]
        t_reg = time.perf_counter()
        for w in range(workers):
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--worker", str(w), "--master", str(master), "--home", str(root / "keys"),
                 "--friends", str(per[w]), "--sessions", str(sessions_per_worker), "--phases", json.dumps(phases)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            ))
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("a load worker died while registering")
        register_s = time.perf_counter() - t_reg
        wall_start = time.time() + 1.0
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{wall_start}\n")
            p.stdin.flush()
        asks, cpu = trio.run(_ask_and_watch, master, asker, wall_start, phases, master_pid, want)
        worker_results = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            p.kill()
            p.wait()
        cluster.stop_all()
    out: dict = {"params": {"friends": friends, "workers": workers, "sessions": workers * sessions_per_worker,
                            "friends_per_session": round(friends / (workers * sessions_per_worker)), "steady_s": steady_s,
                            "step_s": step_s, "ask_want": want, "sync": sync, "cpus": os.cpu_count()},
                 "register_s": round(register_s, 2), "phases": {}}
    sustained = 0.0
    for name, rate, seconds in phases:
        rows = [r[name] for r in worker_results]
        done = sum(r["done"] for r in rows)
        offered = sum(r["offered"] for r in rows)
        achieved = done / seconds
        held = done >= 0.97 * offered and sum(r["backpressure"] for r in rows) == 0 and sum(r["errors"] for r in rows) == 0
        phase = {
            "offered_per_s": round(offered / seconds),
            "heartbeats_per_s": round(achieved),
            "held": held,
            "backpressure": sum(r["backpressure"] for r in rows),
            "errors": sum(r["errors"] for r in rows),
            "hb_p50_ms_worst_worker": max(r["p50_ms"] for r in rows),
            "hb_p99_ms_worst_worker": max(r["p99_ms"] for r in rows),
            "master_cpu_s": round(cpu[name], 2),
            "master_cpu_us_per_heartbeat": round(cpu[name] / max(done, 1) * 1e6, 1),
            "generators_cpu_s": round(sum(r["cpu_s"] for r in rows), 2),
        }
        out["phases"][name] = phase
        if held:
            sustained = max(sustained, achieved)
    steady = out["phases"]["steady"]
    out["heartbeats_per_s"] = steady["heartbeats_per_s"]
    out["steady_held"] = steady["held"]
    out["sustained_max_heartbeats_per_s"] = round(sustained)
    out["master_cpu_us_per_heartbeat"] = steady["master_cpu_us_per_heartbeat"]
    out["asks"] = len(asks)
    out["friends_granted_per_ask_min"] = min((g for _, g in asks), default=0)
    out["assign_p50_ms"] = round(_pct([a for a, _ in asks], 0.5) * 1000, 2)
    out["assign_p99_ms"] = round(_pct([a for a, _ in asks], 0.99) * 1000, 2)
    out["assign_max_ms"] = round(max((a for a, _ in asks), default=float("nan")) * 1000, 2)
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    return out


async def _ask_and_watch(master: Address, asker: Identity, wall_start: float, phases, master_pid: int, want: int):
    start = trio.current_time() + (wall_start - time.time())
    cpu: dict[str, float] = {}
    asks: list[tuple[float, int]] = []
    steady_end = start + phases[0][2]

    async def watch() -> None:
        t = start
        await trio.sleep_until(t)
        for name, _, seconds in phases:
            c0 = _cpu_of(master_pid)
            t += seconds
            await trio.sleep_until(t)
            cpu[name] = _cpu_of(master_pid) - c0

    async def ask() -> None:
        address = str(Address("127.0.0.1", 1, asker.fingerprint))
        async with connect(master, asker) as session:
            await trio.sleep_until(start + 1.0)  # the first second: every friend has beaten once
            while trio.current_time() < steady_end - 0.2:
                t0 = time.perf_counter()
                reply = await session.call(msg.AskFriends(
                    submitter="artist", submitter_key=asker.fingerprint, frames=8, want=want, profile=PROFILE,
                    checks_per_friend=1, blend_sha256="0" * 64, address=address,
                ))
                asks.append((time.perf_counter() - t0, len(reply.friends)))
                await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        nursery.start_soon(ask)
    return asks, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--friends", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--steady", type=float, default=10.0)
    parser.add_argument("--sync", choices=("full", "normal"), default="full", help="the master's log sync (frender run master --sync)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--phases", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        phases = [tuple(p) for p in json.loads(args.phases)]
        result = trio.run(_worker, Address.parse(args.master), args.home, args.worker, args.friends, args.sessions, phases)
        print(json.dumps(result), flush=True)
        return
    print(json.dumps(run(args.friends, args.workers, args.sessions, args.steady, sync=args.sync), indent=2))


if __name__ == "__main__":
    main()
