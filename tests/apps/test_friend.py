"""The friend against a fake master and a fake requester on the real transports.

The fakes are test doubles of the master and requester apps (tested end to end
elsewhere): they speak the real messages over real TLS sockets on 127.0.0.1,
and the friend renders with the real ModelledBackend (or real Blender). Tests
with the modelled backend run on trio's MockClock (autojump), and the friend's
wall clock follows it, so no test waits for real seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import attrs
import numpy as np
import pytest
import trio

from frender.apps.availability import IdlePolicy, IdleReading, Schedule, local_time, read_status, write_pause
from frender.apps.friend import FriendRefused, FriendSettings, run_friend
from frender.apps.friend_work import BlendCache as _BlendCache
from frender.apps.messages import (
    FrameStored,
    GiveBack,
    Heartbeat,
    HeartbeatReply,
    NoWork,
    Ok,
    RegisterFriend,
    Registered,
    WantWork,
    Work,
)
from frender.blender import BpyBackend, GuardRefused, ModelledBackend, build_demo_scene, decode_png, modelled_frame
from frender.transports import (
    Address,
    Assignment,
    FileHeader,
    Handler,
    Identity,
    Limits,
    Peer,
    Refused,
    serve,
    sign_assignment,
)

USER, NAME = "alice", "laptop"
FRIEND = f"{USER}/{NAME}"
SIZE = (32, 18)
LIMITS = Limits(max_per_host=1000)
FAST = FriendSettings(reconnect_first=0.02, reconnect_max=0.1, call_deadline=5.0)
EPOCH = 1_800_000_000.0  # the wall clock's reading when trio's MockClock reads 0


def wall_clock() -> float:
    """The friend's wall clock in these tests: it follows trio's clock (virtual under autojump_clock)."""
    return EPOCH + trio.current_time()


# ---------------------------------------------------------------- fakes


class FakeMaster(Handler):
    """Registers anyone not in ``taken``; hands ``offer`` (assignment, requester) to every heartbeat."""

    def __init__(self, *, taken: frozenset[str] = frozenset()) -> None:
        self.taken = taken
        self.registrations: list[RegisterFriend] = []
        self.heartbeats: list[Heartbeat] = []
        self.friends: set[str] = set()
        self.offer: tuple[object, str] | None = None

    async def call(self, peer: Peer, request: object) -> object:
        if isinstance(request, RegisterFriend):
            if request.user in self.taken:
                raise Refused("name-taken", f"username {request.user!r} belongs to another key")
            self.registrations.append(request)
            self.friends.add(f"{request.user}/{request.name}")
            return Registered(friend=f"{request.user}/{request.name}", heartbeat_every=0.02)
        if isinstance(request, Heartbeat):
            if request.friend not in self.friends:
                raise Refused("unknown-friend", f"friend {request.friend!r} is not registered")
            self.heartbeats.append(request)
            if self.offer is None:
                return HeartbeatReply()
            signed, requester = self.offer
            return HeartbeatReply(assignment=signed, requester=requester)
        raise Refused("unsupported", type(request).__name__)


class FakeRequester(Handler):
    """Hands out ``tasks`` in order, then NoWork(over=True); stores frames; records every exchange."""

    def __init__(self, root: Path, blend: Path, tasks: list[Work]) -> None:
        self.root = root
        self.blend = blend
        self.tasks = list(tasks)
        self.blend_gets = 0
        self.frames: dict[int, bytes] = {}
        self.headers: dict[int, FileHeader] = {}
        self.given_back: list[int] = []
        self.frame_arrived = trio.Event()
        self.asks: list[tuple[tuple[int, ...], tuple[int, ...]]] = []  # (keeping, frames in so far)
        self.sending: list[tuple[int, ...]] = []  # each ask's tasks named as only being sent
        self.put_seconds = 0.0  # how long storing a frame takes
        self.storing = self.most_storing = 0  # frames being stored now, and at most at once
        self.stored_before_most = 0  # frames stored before that most was first reached

    async def call(self, peer: Peer, request: object) -> object:
        if isinstance(request, WantWork):
            self.asks.append((request.keeping, tuple(self.frames)))
            self.sending.append(request.sending)
            return self.tasks.pop(0) if self.tasks else NoWork(over=True, why="all frames final")
        if isinstance(request, GiveBack):
            self.given_back.append(request.task)
            return Ok()
        raise Refused("unsupported", type(request).__name__)

    async def open_get(self, peer: Peer, header: FileHeader) -> Path:
        assert header.kind == "blend"
        self.blend_gets += 1
        return self.blend

    async def accept_put(self, peer: Peer, header: FileHeader) -> Path:
        return self.root / f"frame_{header.frame:04d}.png"

    async def put_done(self, peer: Peer, header: FileHeader, path: Path) -> object:
        self.storing += 1
        if self.storing > self.most_storing:
            self.most_storing, self.stored_before_most = self.storing, len(self.frames)
        try:
            await trio.sleep(self.put_seconds)
        finally:
            self.storing -= 1
        self.frames[header.frame] = path.read_bytes()
        self.headers[header.frame] = header
        self.frame_arrived.set()
        return FrameStored(frame=header.frame, ok=True)


async def start_server(nursery: trio.Nursery, identity: Identity, handler: Handler, port: int = 0) -> Address:
    port = await nursery.start(partial(serve, limits=LIMITS), identity, "127.0.0.1", port, handler)
    return Address("127.0.0.1", port, identity.fingerprint)


def work(task: int, frames: tuple[int, ...], *, job: int = 7, deadline: float = 30.0) -> Work:
    return Work(job=job, task=task, frames=frames, deadline=deadline, width=SIZE[0], height=SIZE[1])


async def until(predicate, seconds: float = 5.0) -> None:
    """Wait until ``predicate()`` holds."""
    with trio.fail_after(seconds):
        while not predicate():
            await trio.sleep(0.01)


@attrs.define
class Farm:
    """A fake master and requester, the friend's home and its assignment."""

    tmp: Path
    master: FakeMaster
    master_identity: Identity
    master_address: Address
    requester: FakeRequester
    requester_address: Address
    blend_sha256: str
    lines: list[str]
    clock: Callable[[], float] = wall_clock  # the friend's wall clock, which its assignments expire by

    @property
    def home(self) -> Path:
        return self.tmp / "friend"

    def assign(self, job: int = 7) -> None:
        """Make the master hand the friend an assignment for ``job``."""
        friend_key = Identity.load_or_create(self.home).fingerprint
        assignment = Assignment(
            job=job,
            friend=FRIEND,
            friend_key=friend_key,
            requester_key=self.requester_address.fingerprint,
            blend_sha256=self.blend_sha256,
            expires=self.clock() + 600,
        )
        self.master.offer = (sign_assignment(self.master_identity, assignment), str(self.requester_address))

    async def start_friend(self, nursery: trio.Nursery, *, seconds_per_frame: float = 0.01, **kw) -> None:
        backend = kw.pop("backend", None) or ModelledBackend(seconds_per_frame, resolution=SIZE)
        await nursery.start(
            partial(run_friend, master=self.master_address, user=USER, name=NAME, home=self.home,
                    backend=backend, log=self.lines.append, settings=FAST, clock=self.clock, **kw)
        )  # fmt: skip


async def make_farm(
    nursery: trio.Nursery,
    tmp: Path,
    tasks: list[Work],
    blend: Path | None = None,
    *,
    master_nursery: trio.Nursery | None = None,
) -> Farm:
    """Start a fake master (in ``master_nursery``, to stop it alone) and a fake requester serving ``tasks``."""
    if blend is None:
        blend = tmp / "scene.blend"
        blend.write_bytes(os.urandom(50_000))  # the modelled backend never reads it
    (tmp / "received").mkdir()
    master_identity = Identity.load_or_create(tmp / "master")
    requester_identity = Identity.load_or_create(tmp / "requester")
    master = FakeMaster()
    requester = FakeRequester(tmp / "received", blend, tasks)
    return Farm(
        tmp=tmp,
        master=master,
        master_identity=master_identity,
        master_address=await start_server(master_nursery or nursery, master_identity, master),
        requester=requester,
        requester_address=await start_server(nursery, requester_identity, requester),
        blend_sha256=hashlib.sha256(blend.read_bytes()).hexdigest(),
        lines=[],
    )


# ---------------------------------------------------------------- tests


async def test_asks_ahead_while_the_last_frame_renders_keeping_the_task(tmp_path, nursery, autojump_clock):
    """The next task is asked for before the current task's last frame is in, keeping that task;
    the first ask keeps nothing, and every frame still arrives."""
    farm = await make_farm(nursery, tmp_path, [work(1, (1, 2, 3)), work(2, (4,)), work(3, (5, 6))])
    await farm.start_friend(nursery, seconds_per_frame=0.5)  # the last frame renders long after the ask
    farm.assign(job=7)
    await until(lambda: any(beat.last_done == 7 for beat in farm.master.heartbeats))
    assert sorted(farm.requester.frames) == [1, 2, 3, 4, 5, 6]
    keeping = [keep for keep, _ in farm.requester.asks]
    assert keeping[0] == ()
    ahead = {keep: frames for keep, frames in farm.requester.asks if keep}
    assert 1 in {task for keep in ahead for task in keep}  # task 1 was kept while asking for task 2
    assert all(3 not in frames for keep, frames in ahead.items() if keep == (1,))  # before its last frame came


async def test_tasks_whose_frames_are_only_being_sent_are_not_kept_as_rendering(tmp_path, nursery, autojump_clock):
    """A task rendered whole whose frame is still on its way is named as sending, not as rendering: the
    requester may hand the next task while the last one's file leaves (Rule 9 of the job core)."""
    farm = await make_farm(nursery, tmp_path, [work(1, (1,)), work(2, (2,)), work(3, (3,))])
    farm.requester.put_seconds = 1.0  # each frame takes two renders' time to store
    await farm.start_friend(nursery, seconds_per_frame=0.5)
    farm.assign(job=7)
    await until(lambda: any(beat.last_done == 7 for beat in farm.master.heartbeats), 30.0)
    assert sorted(farm.requester.frames) == [1, 2, 3]
    asks = list(zip((keep for keep, _ in farm.requester.asks), farm.requester.sending, strict=True))
    assert ((2,), (1,)) in asks  # asking ahead while rendering task 2, task 1's frame still being sent
    assert all(not set(keep) & set(sending) for keep, sending in asks)


async def test_two_frames_are_sent_side_by_side(tmp_path, nursery, autojump_clock):
    """While the requester stores one frame (round trips and a commit), the next is already being sent, over a
    connection of its own once the first frame is through; never more than SENDERS at once, and every frame arrives."""
    from frender.apps.friend_work import SENDERS

    farm = await make_farm(nursery, tmp_path, [work(1, (1, 2, 3, 4, 5, 6))])
    farm.requester.put_seconds = 1.0  # storing a frame takes ten renders' time
    await farm.start_friend(nursery, seconds_per_frame=0.1)
    farm.assign(job=7)
    await until(lambda: any(beat.last_done == 7 for beat in farm.master.heartbeats), 30.0)
    assert sorted(farm.requester.frames) == [1, 2, 3, 4, 5, 6]
    assert farm.requester.most_storing == SENDERS == 2
    assert farm.requester.stored_before_most >= 1  # the second sender waited for the first frame through


async def test_registers_and_heartbeats(tmp_path, nursery, autojump_clock):
    """The friend registers with its profile and capacity, logs it, then heartbeats, idle and not busy."""
    farm = await make_farm(nursery, tmp_path, [])
    await farm.start_friend(nursery, threads=3)
    (registration,) = farm.master.registrations
    assert (registration.user, registration.name, registration.capacity) == (USER, NAME, 3)
    assert registration.profile.blender_version == "modelled"
    await until(lambda: len(farm.master.heartbeats) >= 3)
    # Idle: each heartbeat may wait at the master for a job, as long as the interval between them.
    assert all(beat == Heartbeat(friend=FRIEND, busy=False, last_done=None, wait=0.02) for beat in farm.master.heartbeats)
    assert "sandbox" in farm.lines[0] and "modelled" in farm.lines[0]
    assert any(line.startswith(f"registered as {FRIEND}") for line in farm.lines)


async def test_renders_a_job_and_reports_it_done(tmp_path, nursery, autojump_clock):
    """Two tasks of one job: the .blend is fetched once, every frame arrives intact, then the
    job is reported as last_done, its .blend leaves the cache and no job dir is left behind."""
    farm = await make_farm(nursery, tmp_path, [work(1, (1, 2, 3)), work(2, (4, 5))])
    await farm.start_friend(nursery)
    farm.assign(job=7)
    await until(lambda: any(beat.last_done == 7 for beat in farm.master.heartbeats))

    assert farm.requester.blend_gets == 1
    assert sorted(farm.requester.frames) == [1, 2, 3, 4, 5]
    for frame, data in farm.requester.frames.items():
        expected = modelled_frame(frame, width=SIZE[0], height=SIZE[1])
        assert data == expected
        assert farm.requester.headers[frame].sha256 == hashlib.sha256(expected).hexdigest()
    assert list((farm.home / "cache").iterdir()) == []
    assert list((farm.home / "jobs").iterdir()) == []
    assert farm.requester.given_back == []
    assert any("job 7: over (all frames final)" in line for line in farm.lines)


async def test_reregisters_after_the_master_restarts(tmp_path, nursery, autojump_clock):
    """A master stopped and started again on its port (forgetting every friend) sees the friend register again."""
    with trio.CancelScope() as first_life:
        async with trio.open_nursery() as master_nursery:
            farm = await make_farm(nursery, tmp_path, [], master_nursery=master_nursery)
            await farm.start_friend(nursery)
            await until(lambda: len(farm.master.heartbeats) >= 2)
            first_life.cancel()

    reborn = FakeMaster()  # a restart: no friend is known
    await trio.sleep(0.3)  # down for a while: the friend keeps redialling
    await start_server(nursery, farm.master_identity, reborn, farm.master_address.port)
    await until(lambda: len(reborn.heartbeats) >= 2)
    assert [r.name for r in reborn.registrations] == [NAME]
    assert any(line.startswith("lost the master") for line in farm.lines)


async def test_reregisters_when_the_master_forgets_it(tmp_path, nursery, autojump_clock):
    """An "unknown-friend" heartbeat refusal (a master restarted behind the same link) means: register again."""
    farm = await make_farm(nursery, tmp_path, [])
    await farm.start_friend(nursery)
    farm.master.friends.clear()
    await until(lambda: len(farm.master.registrations) == 2)
    assert any("unknown-friend" in line for line in farm.lines)


async def test_name_taken_is_fatal(tmp_path, nursery, autojump_clock):
    """A username bound to another key ends the friend with a clear FriendRefused."""
    farm = await make_farm(nursery, tmp_path, [])
    farm.master.taken = frozenset({USER})
    with pytest.raises(FriendRefused, match="belongs to another key"):
        await farm.start_friend(nursery)


async def test_gives_back_its_task_when_cancelled(tmp_path, nursery, autojump_clock):
    """Cancelling the friend mid-task hands the open task back before run_friend returns."""
    farm = await make_farm(nursery, tmp_path, [work(4, tuple(range(1, 100)))])
    with trio.CancelScope() as friend_scope:
        async with trio.open_nursery() as friend_nursery:
            await farm.start_friend(friend_nursery, seconds_per_frame=0.05)
            farm.assign()
            await farm.requester.frame_arrived.wait()
            friend_scope.cancel()
    assert farm.requester.given_back == [4]
    assert 0 < len(farm.requester.frames) < 99


async def test_gives_back_a_task_past_its_deadline(tmp_path, nursery, autojump_clock):
    """A task that cannot finish by its deadline is stopped and given back; the job goes on."""
    farm = await make_farm(nursery, tmp_path, [work(1, (1, 2, 3, 4, 5), deadline=0.2), work(2, (9,))])
    await farm.start_friend(nursery, seconds_per_frame=0.1)
    farm.assign()
    await until(lambda: any(beat.last_done == 7 for beat in farm.master.heartbeats))
    assert farm.requester.given_back == [1]
    assert 9 in farm.requester.frames and 5 not in farm.requester.frames


async def test_black_cheat_sends_black_frames(tmp_path, nursery, autojump_clock):
    """The "black" cheat renders, then sends an all-black image of the right size for every frame."""
    farm = await make_farm(nursery, tmp_path, [work(1, (1, 2))])
    await farm.start_friend(nursery, cheat="black")
    farm.assign()
    await until(lambda: len(farm.requester.frames) == 2)
    for data in farm.requester.frames.values():
        pixels = decode_png(data, width=SIZE[0], height=SIZE[1])
        assert not pixels[..., :3].any()


async def test_stale_cheat_sends_the_previous_frame(tmp_path, nursery, autojump_clock):
    """The "stale" cheat sends each frame as the image of the one before it (the first one noise)."""
    farm = await make_farm(nursery, tmp_path, [work(1, (1, 2, 3))])
    await farm.start_friend(nursery, cheat="stale")
    farm.assign()
    await until(lambda: len(farm.requester.frames) == 3)
    decoded = {n: decode_png(data, width=SIZE[0], height=SIZE[1]) for n, data in farm.requester.frames.items()}
    first = decode_png(modelled_frame(1, width=SIZE[0], height=SIZE[1]), width=SIZE[0], height=SIZE[1])
    assert decoded[1][..., :3].any() and not np.array_equal(decoded[1], first)  # neither black nor honest
    for frame in (2, 3):
        previous = decode_png(modelled_frame(frame - 1, width=SIZE[0], height=SIZE[1]), width=SIZE[0], height=SIZE[1])
        assert np.array_equal(decoded[frame], previous)


class RefusingBackend(ModelledBackend):
    """A modelled Blender whose guard refuses every file."""

    async def render(self, *args, **kwargs):
        raise GuardRefused(["a compositor File Output node"])


async def test_gives_back_a_task_blender_refuses(tmp_path, nursery, autojump_clock):
    """A Blender failure is logged and the task given back at once, so the requester can reassign it."""
    farm = await make_farm(nursery, tmp_path, [work(1, (1, 2))])
    await farm.start_friend(nursery, backend=RefusingBackend(0.01, resolution=SIZE))
    farm.assign()
    await until(lambda: any(beat.last_done == 7 for beat in farm.master.heartbeats))
    assert farm.requester.given_back == [1]
    assert "job 7 task 1: refused: a compositor File Output node" in farm.lines


class CountingBackend(ModelledBackend):
    """A modelled Blender that counts the sessions opened; frames listed in ``fail`` fail their task once."""

    def __init__(self, *args, fail: tuple[int, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list[object] = []
        self.fail = set(fail)

    async def start_session(self, blend, job_dir, **kwargs):
        assert blend == job_dir / "scene.blend" and blend.is_file()
        session = await super().start_session(blend, job_dir, **kwargs)
        self.sessions.append(session)
        return session

    async def render(self, blend, job_dir, frames, **kwargs):
        if failing := self.fail.intersection(frames):
            self.fail -= failing
            raise GuardRefused([f"frame {min(failing)} refused once"])
        return await super().render(blend, job_dir, frames, **kwargs)


async def test_one_render_session_per_job(tmp_path, nursery, autojump_clock):
    """Every task of a job goes through one session, opened with the first task and closed with
    the job; a failed task ends its session, and the next task opens a fresh one."""
    tasks = [work(1, (1, 2)), work(2, (3,)), work(3, (4,)), work(4, (5,)), work(5, (4,))]
    farm = await make_farm(nursery, tmp_path, tasks)
    backend = CountingBackend(0.01, resolution=SIZE, fail=(4,))
    await farm.start_friend(nursery, backend=backend)
    farm.assign()
    await until(lambda: any(beat.last_done == 7 for beat in farm.master.heartbeats))
    assert len(backend.sessions) == 2  # tasks 1-3, then 4-5 after task 3 failed
    assert not any(session.alive for session in backend.sessions)
    assert farm.requester.given_back == [3]
    assert sorted(farm.requester.frames) == [1, 2, 3, 4, 5]
    assert list((farm.home / "jobs").iterdir()) == []


async def test_blend_cache_keeps_the_newest_and_those_in_use(tmp_path):
    """The cache holds at most its size of files, evicting the least recently used one not in use."""
    cache = _BlendCache(tmp_path / "cache", 3)
    fetched: list[str] = []

    async def fetch(sha: str, dest: Path) -> None:
        fetched.append(sha)
        dest.write_bytes(sha.encode())

    async with cache.use("a" * 64, partial(fetch, "a" * 64)):
        for sha in ("b" * 64, "c" * 64, "b" * 64, "d" * 64):
            async with cache.use(sha, partial(fetch, sha)):
                await trio.sleep(0.01)  # distinct modification times
    assert fetched == ["a" * 64, "b" * 64, "c" * 64, "d" * 64]  # the second "b" came from the cache
    assert sorted(path.stem[0] for path in cache.root.iterdir()) == ["a", "b", "d"]  # "c" was least recent


def test_ctrl_c_gives_back_and_raises_keyboard_interrupt(tmp_path, request):
    """Ctrl-C (SIGINT under trio.run, as the CLI runs the friend) gives the open task back,
    then raises a plain KeyboardInterrupt."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a shell's background job: Ctrl-C as a terminal gives it
        signal.signal(signal.SIGINT, signal.default_int_handler)
        request.addfinalizer(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    farms: list[Farm] = []
    servers_up = threading.Event()

    async def servers() -> None:
        # In their own thread and trio.run, so the Ctrl-C meant for the friend leaves them up.
        async with trio.open_nursery() as nursery:
            farms.append(await make_farm(nursery, tmp_path, [work(4, tuple(range(1, 100)))]))
            farms[0].clock = time.time  # the friend runs in another trio.run, on the real clock
            farms[0].assign()
            servers_up.set()
            await farms[0].requester.frame_arrived.wait()
            os.kill(os.getpid(), signal.SIGINT)
            await until(lambda: farms[0].requester.given_back, seconds=30)
            await trio.sleep(0.5)  # let the reply to GiveBack reach the friend
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(servers,))
    thread.start()
    try:
        assert servers_up.wait(10)
        (farm,) = farms
        backend = ModelledBackend(0.05, resolution=SIZE)
        friend = partial(run_friend, master=farm.master_address, user=USER, name=NAME, home=farm.home,
                         backend=backend, log=farm.lines.append, settings=FAST)  # fmt: skip

        async def bounded() -> None:
            with trio.fail_after(60):  # no Ctrl-C seen: fail with the friend's log rather than wait for ever
                await friend()

        try:
            with pytest.raises(KeyboardInterrupt):
                trio.run(bounded)
        except trio.TooSlowError:
            pytest.fail(f"the friend saw no Ctrl-C within 60 s; its log: {farm.lines[-15:]}")
        assert farm.requester.given_back == [4]
        assert "job 7 task 4: given back" in farm.lines
    finally:
        thread.join(15)


# ------------------------------------------------------- pause, schedule, idleness, refusals


def beats_since(farm: Farm, start: int) -> list[Heartbeat]:
    return farm.master.heartbeats[start:]


async def test_pause_finishes_the_frame_in_hand_hands_back_the_rest_and_resumes(tmp_path, nursery, autojump_clock):
    """Paused mid-task, the friend finishes and sends the frame in hand, gives the rest back, leaves the job,
    says "paused" to the master and declines a job assigned meanwhile; resumed, it takes the next job."""
    farm = await make_farm(nursery, tmp_path, [work(4, tuple(range(1, 41))), work(5, (50,), job=9)])
    await farm.start_friend(nursery, seconds_per_frame=1.0)
    farm.assign(job=7)
    await until(lambda: len(farm.requester.frames) >= 3, seconds=60)
    write_pause(farm.home, "frame")
    at_pause = len(farm.requester.frames)
    await until(lambda: any(beat.last_done == 7 for beat in farm.master.heartbeats), seconds=10)
    assert farm.requester.given_back == [4]
    assert sorted(farm.requester.frames) == list(range(1, len(farm.requester.frames) + 1))
    assert at_pause < len(farm.requester.frames) <= at_pause + 2  # the frame in hand was finished and sent
    assert any("job 7: over (left the job: paused)" in line for line in farm.lines)
    await until(lambda: read_status(farm.home) == "paused")
    paused_from = len(farm.master.heartbeats)
    await until(lambda: len(farm.master.heartbeats) > paused_from + 2)
    assert all(beat.away == "paused" for beat in beats_since(farm, paused_from))

    asks = len(farm.requester.asks)
    farm.assign(job=8)  # a master that had not heard yet: the friend declines
    await until(lambda: any(beat.last_done == 8 for beat in farm.master.heartbeats))
    assert len(farm.requester.asks) == asks and "job 8: declined (paused)" in farm.lines

    write_pause(farm.home, None)
    await until(lambda: farm.master.heartbeats[-1].away == "")
    farm.assign(job=9)
    await until(lambda: any(beat.last_done == 9 for beat in farm.master.heartbeats), seconds=10)
    assert 50 in farm.requester.frames


async def test_pause_now_stops_the_frame_in_hand(tmp_path, nursery, autojump_clock):
    """pause --now hands the task back at once, without waiting for a long frame to finish."""
    farm = await make_farm(nursery, tmp_path, [work(4, (1, 2, 3), deadline=600)])
    await farm.start_friend(nursery, seconds_per_frame=100.0)
    farm.assign(job=7)
    await until(lambda: farm.requester.asks, seconds=10)
    await trio.sleep(5)  # well inside the first frame
    paused_at = trio.current_time()
    write_pause(farm.home, "now")
    await until(lambda: farm.requester.given_back == [4], seconds=10)
    assert trio.current_time() - paused_at < 5  # within a poll and Blender's grace, not the frame's 100 s
    assert farm.requester.frames == {}


async def test_when_idle_stops_within_seconds_when_the_owner_returns(tmp_path, nursery, autojump_clock):
    """With --when-idle the friend says "owner active" until the computer has been idle N minutes; when the
    owner comes back mid-frame it stops at once, hands the task back and takes no job until idle again."""
    farm = await make_farm(nursery, tmp_path, [work(4, (1, 2, 3), deadline=600), work(5, (9,), job=8)])
    reading = [IdleReading(input_age=10, cpu_age=1000)]
    await farm.start_friend(nursery, seconds_per_frame=50.0, idle=IdlePolicy(minutes=5), sense_idle=lambda: reading[0])
    await until(lambda: len(farm.master.heartbeats) >= 2)
    assert farm.master.heartbeats[-1].away == "owner active"
    reading[0] = IdleReading(input_age=400, cpu_age=1000)
    await until(lambda: farm.master.heartbeats[-1].away == "")
    farm.assign(job=7)
    await until(lambda: farm.requester.asks, seconds=10)
    await trio.sleep(10)
    back_at = trio.current_time()
    reading[0] = IdleReading(input_age=0, cpu_age=1000)  # a key pressed
    await until(lambda: farm.requester.given_back == [4], seconds=10)
    assert trio.current_time() - back_at < 5
    await until(lambda: farm.master.heartbeats[-1].away == "owner active")
    assert read_status(farm.home) == "owner active"


async def test_outside_its_schedule_the_friend_says_so(tmp_path, nursery, autojump_clock):
    """Outside every window of its schedule the friend's heartbeats say "outside schedule"; inside, nothing."""
    hour = local_time(wall_clock()).hour
    outside = Schedule.parse(f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00")
    farm = await make_farm(nursery, tmp_path, [])
    await farm.start_friend(nursery, schedule=outside)
    assert farm.master.registrations[0].away == "outside schedule"  # told from the very first message
    await until(lambda: len(farm.master.heartbeats) >= 2)
    assert {beat.away for beat in farm.master.heartbeats} == {"outside schedule"}
    assert read_status(farm.home) == "outside schedule"


async def test_refused_users_are_declared_when_registering_and_in_every_heartbeat(tmp_path, nursery, autojump_clock):
    """--refuse-user names reach the master with the registration and every heartbeat, so it never assigns their jobs."""
    farm = await make_farm(nursery, tmp_path, [])
    await farm.start_friend(nursery, refuse=["mallory", "eve", "mallory"])
    await until(lambda: len(farm.master.heartbeats) >= 2)
    assert farm.master.registrations[0].refuse == ("eve", "mallory")
    assert all(beat.refuse == ("eve", "mallory") for beat in farm.master.heartbeats)


class LimitsBackend(ModelledBackend):
    """A modelled Blender that records the limits each session is opened with."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limits: list[object] = []

    async def start_session(self, blend, job_dir, **kwargs):
        self.limits.append(kwargs["limits"])
        return await super().start_session(blend, job_dir, **kwargs)


async def test_blender_runs_niced_and_memory_capped(tmp_path, nursery, autojump_clock):
    """The friend opens its Blender sessions at nice 10 and within its memory cap by default."""
    farm = await make_farm(nursery, tmp_path, [work(1, (1,))])
    backend = LimitsBackend(0.01, resolution=SIZE)
    await farm.start_friend(nursery, backend=backend)
    farm.assign()
    await until(lambda: any(beat.last_done == 7 for beat in farm.master.heartbeats))
    (limits,) = backend.limits
    assert (limits.nice, limits.memory_bytes) == (10, 8 << 30)


@pytest.fixture(scope="module")
def bpy_backend() -> BpyBackend:
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("the bpy module is not installed (pip install 'frender[bpy]')")
    return BpyBackend()


@pytest.mark.blender
async def test_renders_the_demo_scene_with_blender(tmp_path, nursery, bpy_backend):
    """With real Blender, the friend renders two frames of the demo scene and delivers both as PNGs."""
    build = partial(build_demo_scene, frames=2, resolution=(64, 36), samples=4, backend=bpy_backend)
    blend = await trio.to_thread.run_sync(build, tmp_path / "demo" / "demo.blend")
    task = Work(job=7, task=1, frames=(1, 2), deadline=120, width=64, height=36)
    farm = await make_farm(nursery, tmp_path, [task], blend)
    await farm.start_friend(nursery, backend=bpy_backend, threads=2)
    farm.assign()
    await until(lambda: any(beat.last_done == 7 for beat in farm.master.heartbeats), seconds=120)
    assert sorted(farm.requester.frames) == [1, 2]
    frames = [decode_png(farm.requester.frames[n], width=64, height=36) for n in (1, 2)]
    assert frames[0][..., :3].any() and not np.array_equal(frames[0], frames[1])
    assert farm.requester.given_back == []



@pytest.mark.blender
async def test_blender_child_runs_at_low_priority(tmp_path, bpy_backend):
    """A friend's real Blender process is niced: its niceness is 10 above ours."""
    import psutil

    from frender.blender import Limits as RenderLimits
    from frender.blender import start_session

    build = partial(build_demo_scene, frames=1, resolution=(64, 36), samples=4, backend=bpy_backend)
    blend = await trio.to_thread.run_sync(build, tmp_path / "job" / "scene.blend")
    session = await start_session(bpy_backend, blend, blend.parent, threads=1, limits=RenderLimits(wall_seconds=120, nice=10))
    try:
        assert psutil.Process(session.pid).nice() == min(os.nice(0) + 10, 19)
        frames = await session.render((1,))
        assert [frame.frame for frame in frames] == [1]
    finally:
        await session.aclose()
