"""The requester node's own rules, on a real master and requester (the modelled backend): its timing,
commit before acting, and reactions that never spin. Timed tests run on trio's MockClock (autojump)."""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from pathlib import Path

import pytest
import trio

from frender import blender
from frender.apps import messages as msg
from frender.apps.comparisons import ComparePool
from frender.apps.replay import audit
from frender.apps.requester import (
    EvictionsReported, FriendKeys, JobAccepted, JobOpening, JobOpeningReleased, JobWants, LogFailed, ReportDelivered, ReportRefused,
    RequesterNode, RequesterSettings,
)
from frender.core import job as core
from frender.store import SqliteLog, events
from frender.transports import (
    Address, Assignment, Handler, Identity, Peer, PeerGone, Refused, RemoteError, SignedAssignment, file_header, put_file, serve,
    sign_assignment,
)
from test_requester_safety import _idat_bomb
from test_security import BACKEND, LIMITS, World

EPOCH = 1_800_000_000.0  # the wall clock's reading when trio's MockClock reads 0


def mock_wall_clock() -> float:
    """A wall clock that follows trio's clock, so a test's virtual time also moves ``now``."""
    return EPOCH + trio.current_time()


async def test_a_new_jobs_friends_are_not_silent_before_they_could_ask(tmp_path, nursery):
    """Silence counts from when a friend joined the job, not from when the requester started; a friend gone silent
    reads "gone" in the job's progress (not evicted, not still rendering)."""
    # Real time, not the autojump clock: the upload's body moves in worker threads, and a virtual clock
    # would jump past its deadline while they run.
    world = World(tmp_path, RequesterSettings(tick=0.02, friend_silence=1.0))
    await world.start(nursery)
    nursery.start_soon(world.requester_node.tick_forever)
    await trio.sleep(1.2)  # the requester has run longer than friend_silence
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    job = (await world.alice_submits()).job
    await trio.sleep(0.1)  # several ticks, well within friend_silence of joining
    assert core.friend_status(world.requester_node.state, job, "bob/pc") == "active"
    await trio.sleep(1.2)  # now bob has been silent too long: gone
    assert core.friend_status(world.requester_node.state, job, "bob/pc") == "gone"
    (line,) = world.requester_node.progress_of(job).friends
    assert line.friend == "bob/pc" and line.gone and not line.evicted


async def test_a_friend_whose_call_for_work_is_held_is_never_silent(tmp_path, nursery):
    """A friend held back by admission waits in its call for work longer than ``friend_silence``: while that call
    is held it is not gone; once it has none, silence counts again."""
    world = World(tmp_path, RequesterSettings(tick=0.02, friend_silence=0.5))
    await world.start(nursery)
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    job = (await world.alice_submits()).job
    node = world.requester_node
    node._asking[(job, "bob/pc")] = 1  # as _want_work holds it
    nursery.start_soon(node.tick_forever)
    await trio.sleep(1.0)
    assert core.friend_status(node.state, job, "bob/pc") == "active"
    del node._asking[(job, "bob/pc")]
    await trio.sleep(1.0)
    assert core.friend_status(node.state, job, "bob/pc") == "gone"


# ------------------------------------------------------------ a failing log


class FailingLog(SqliteLog):
    """requester.db on a disk that fails: every append after the first ``good`` ones raises, as SQLite does."""

    good = 4

    def append(self, events):
        if events:
            if self.good <= 0:
                raise sqlite3.OperationalError("disk I/O error")
            self.good -= 1
        return super().append(events)


async def test_a_failed_append_stops_the_requester_and_nothing_told_is_lost(tmp_path, nursery):
    """When an append fails mid-job the requester stops; its log, replayed, holds every task the
    friend was given and every frame it was told was stored, and the dead node's state is the log's."""
    world = World(tmp_path, requester_log=FailingLog)
    await world.start(nursery)
    node = world.requester_node
    stopped: list[LogFailed] = []

    async def watch() -> None:
        try:
            await node.stop_on_log_failure()
        except LogFailed as exc:
            stopped.append(exc)

    nursery.start_soon(watch)
    await world.register_bob()
    signed = (await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))).assignment
    job = (await world.alice_submits()).job  # appends 1 (the opening) and 2 (the job)
    signed = (await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))).assignment
    tasks: list[int] = []  # tasks bob was given
    stored: dict[int, str] = {}  # frames bob was told were stored -> sha256
    try:
        while True:
            work = await world.call("bob", world.requester, msg.WantWork(assignment=signed))  # append 3, ...
            if not isinstance(work, msg.Work):
                break
            tasks.append(work.task)
            for frame in work.frames:
                path = tmp_path / f"bob-{frame}.png"
                path.write_bytes(blender.modelled_frame(frame, width=work.width, height=work.height))
                header = await file_header(path, kind="frame", job=job, frame=frame)
                reply = await put_file(world.requester, world.people["bob"], header, path, limits=LIMITS)
                assert isinstance(reply, msg.FrameStored) and reply.ok
                stored[frame] = header.sha256
    except (RemoteError, PeerGone):
        pass  # the call whose commit failed is not acknowledged: refused, or its link dropped
    await trio.testing.wait_all_tasks_blocked()
    assert stopped and tasks and stored  # it failed mid-job, after some work was acknowledged
    with pytest.raises(RemoteError):  # nothing is answered any more
        await world.call("bob", world.requester, msg.WantWork(assignment=signed))

    log = SqliteLog(tmp_path / "requester.db")
    logged = [event for _, event in events(log)]
    assert {e.task for e in logged if isinstance(e, core.TaskAssigned)} >= set(tasks)
    received = {e.frame: e.sha256 for e in logged if isinstance(e, core.CopyReceived)}
    assert all(received.get(frame) == sha for frame, sha in stored.items())
    reborn = RequesterNode(
        identity=node.identity, home=node.home, log=log, master=node.master, address=node.address, backend=BACKEND, limits=LIMITS
    )
    accepted = reborn.jobs[job]
    assert reborn._progress(accepted) == node._progress(accepted)  # memory never ran ahead of the log
    log.close()


# ------------------------------------------------------------ a job opened at the master, never accepted here


async def settled(node: RequesterNode) -> None:
    """Wait until the node owes no opening (the guard's limit only stops a hung test)."""
    with trio.fail_after(30):
        while node.owed.openings:
            await trio.sleep(0.01)


def nothing_held(world: World, job: int) -> None:
    """The master holds no points for ``job``: closed, its escrow refunded, alice whole again."""
    record = world.master_node.state.jobs[job]
    assert record.closed and record.escrow == record.refunded > 0 and record.paid == 0
    assert world.master_node.state.escrow() == 0
    assert world.master_node.state.accounts["alice"].balance == 100


async def test_a_job_whose_lay_out_fails_after_the_grant_is_released_at_the_master(tmp_path, nursery, monkeypatch):
    """A submit that fails between the master's grant and JobAccepted (linking the file fails) leaves no
    points held: the opening logged before the ask is released, the master closes that job and refunds it."""
    world = World(tmp_path)
    await world.start(nursery)
    node = world.requester_node
    nursery.start_soon(node.react_forever, nursery)
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    blend = await world.upload("alice")

    def failing_link(*args, **kw):
        raise OSError("no space left on device")

    monkeypatch.setattr("frender.apps.submits.os.link", failing_link)
    with pytest.raises(RemoteError):
        await world.call("alice", world.requester, msg.Submit(user="alice", blend_sha256=blend, friends=1, checks_per_friend=1))
    await settled(node)
    [opened] = world.master_node.state.jobs
    nothing_held(world, opened)
    assert not node.jobs
    released = [e for _, e in events(node.log) if isinstance(e, JobOpeningReleased)]
    assert [e.job for e in released] == [opened]


async def test_a_requester_that_stops_between_the_grant_and_its_job_releases_it_on_restart(tmp_path, nursery):
    """When the append of JobAccepted fails (the master already granted and escrowed), the requester
    stops; restarted from its log, it releases that job at the master: no points stay held."""

    class FailsAfterTheOpening(SqliteLog):
        good = 1

        def append(self, events):
            if events:
                if self.good <= 0:
                    raise sqlite3.OperationalError("disk I/O error")
                self.good -= 1
            return super().append(events)

    world = World(tmp_path, requester_log=FailsAfterTheOpening)
    await world.start(nursery)
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    with pytest.raises((RemoteError, PeerGone)):
        await world.alice_submits()
    node = world.requester_node
    assert node.broken is not None
    [opened] = world.master_node.state.jobs
    assert world.master_node.state.escrow() > 0  # held for a job nobody runs, until the requester restarts
    reborn = RequesterNode(
        identity=node.identity, home=node.home, log=SqliteLog(tmp_path / "requester.db"), master=node.master,
        address=node.address, backend=BACKEND, limits=LIMITS,
    )  # fmt: skip
    assert list(reborn.owed.openings)
    nursery.start_soon(reborn.react_forever, nursery)
    await settled(reborn)
    nothing_held(world, opened)
    assert any("never accepted here" in line["text"] for line in audit(tmp_path / "requester.db")["story"])


async def test_a_submit_the_master_refuses_settles_its_opening_at_once(tmp_path, nursery):
    """An opening the master answered with a refusal (no friend of the farm could serve it) opened nothing
    there: it is settled in the log at once, with no job, and nothing is asked of the master again."""
    world = World(tmp_path)
    await world.start(nursery)
    blend = await world.upload("alice")
    with pytest.raises(RemoteError):
        await world.call("alice", world.requester, msg.Submit(user="alice", blend_sha256=blend, friends=1, checks_per_friend=1))
    assert not world.requester_node.owed.openings and not world.master_node.state.jobs
    logged = [e for _, e in events(world.requester_node.log) if isinstance(e, (JobOpening, JobOpeningReleased))]
    assert [type(e) for e in logged] == [JobOpening, JobOpeningReleased] and logged[1] == JobOpeningReleased(opening=logged[0].opening)


# ------------------------------------------------------------ reactions that cannot spin

SIZE = (32, 18)


def settings(**kw) -> core.JobSettings:
    return core.JobSettings(seconds_per_frame=1.0, startup_seconds=1.0, **{"random_order": False, **kw})  # tasks from frame 1 on


class Job:
    """A job driven by hand on a requester node: the test plays the friends, the node decides and commits."""

    def __init__(self, node: RequesterNode, frames: tuple[int, ...], friends: dict[str, str], **kw) -> None:
        self.node = node
        self.frames = frames
        self.friends = friends  # friend -> owner
        self.kw = kw

    async def start(self, job: int = 1) -> None:
        self.job = job
        node = self.node
        for sub in ("copies", "own"):
            (node._job_dir(job) / sub).mkdir(parents=True, exist_ok=True)
        (node._job_dir(job) / "job.blend").write_bytes(b"modelled scene")
        job_settings = settings(**self.kw)
        await node.apply(
            JobAccepted(job=job, submitter="alice", submitter_key="k", blend_sha256="0" * 64, width=SIZE[0], height=SIZE[1],
                        profile=await BACKEND.probe()),
            FriendKeys(job=job, keys={friend: f"key-{friend}" for friend in self.friends}),
            core.StartJob(job=job, frames=self.frames, settings=job_settings, checks_escrowed=4, now=node._now()),
            core.AddFriends(job=job, friends=tuple(core.GrantedFriend(friend=f, owner=o) for f, o in self.friends.items()),
                            entropy="e" * 32, now=node._now()),
        )  # fmt: skip

    async def ask(self, friend: str) -> core.TaskAssigned | None:
        decided = await self.node.apply(core.AskForTask(job=self.job, friend=friend, entropy=self.node._entropy(), now=self.node._now()))
        return next((e for e in decided if isinstance(e, core.TaskAssigned) and e.friend == friend), None)

    async def deliver(self, task: core.TaskAssigned, kind: str = "honest", data: bytes | None = None) -> list[object]:
        """Store and deliver every frame of ``task``: honest images, forged ones, or ``data``."""
        decided: list[object] = []
        given = data
        for frame in task.frames:
            data = blender.modelled_frame(frame, width=SIZE[0], height=SIZE[1]) if given is None else given
            if kind != "honest":
                data = blender.forge_frame(kind, width=SIZE[0], height=SIZE[1], other=None)
            self.node._copy_path(self.job, task.task, frame).write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            decided += await self.node.apply(
                core.DeliverFrame(job=self.job, friend=task.friend, task=task.task, frame=frame, sha256=sha, ok=True, reason="",
                                  entropy=self.node._entropy(), now=self.node._now())
            )  # fmt: skip
        return decided


def requester(tmp_path: Path, master: Address | None = None, **kw) -> RequesterNode:
    identity = Identity.load_or_create(tmp_path / "requester")
    master = master or Address(host="127.0.0.1", port=9, fingerprint="sha256:" + "0" * 64)
    return RequesterNode(
        identity=identity, home=tmp_path / "requester", log=SqliteLog(tmp_path / "requester.db"), master=master,
        address=Address(host="127.0.0.1", port=1, fingerprint=identity.fingerprint), backend=BACKEND,
        settings=RequesterSettings(**kw), limits=LIMITS, clock=mock_wall_clock,
    )  # fmt: skip


def of(decided: list[object], kind: type) -> list:
    return [e for e in decided if isinstance(e, kind)]


async def catch_b(node: RequesterNode) -> core.ComparisonRequested:
    """A 2-frame job on friends a and b where b forges and is caught (the comparator's answers given by hand);
    the pair comparison of b's own check copy that was owed before, now void."""
    run = Job(node, (1, 2), {"a": "alice2", "b": "bob"}, checks_per_friend=1, check_timing="end", max_chunk=1)
    await run.start()
    ta, tb = await run.ask("a"), await run.ask("b")
    await run.deliver(ta)
    await run.deliver(tb, "black")  # b cheats on its own frame
    ca, cb = await run.ask("a"), await run.ask("b")
    assert ca.kind == cb.kind == "check"
    [stale] = of(await run.deliver(cb, "black"), core.ComparisonRequested)  # b's copy of a's frame: owed
    [disputed] = of(await run.deliver(ca), core.ComparisonRequested)  # a's honest copy of b's black frame
    assert (node.owed.comparisons[(1, stale.check, "pair")].a_sha256, node.owed.comparisons[(1, stale.check, "pair")].b_sha256) == (
        stale.a_sha256, stale.b_sha256,
    )  # fmt: skip
    # The comparator's answers for b's check, given by hand: disagree, arbitrate, b is wrong.
    decided = await node.apply(
        core.RecordComparison(job=1, check=disputed.check, against="pair", a_sha256=disputed.a_sha256, b_sha256=disputed.b_sha256,
                              verdict="disagree", fraction_off=0.9, max_diff=255, psnr=9.0, entropy="1" * 32, now=node._now())
    )  # fmt: skip
    [arbitration] = of(decided, core.OwnRenderRequested)
    decided = await node.apply(core.RecordOwnRender(job=1, check=arbitration.check, sha256=disputed.b_sha256, entropy="2" * 32, now=node._now()))
    [vs_subject] = of(decided, core.ComparisonRequested)
    decided = await node.apply(
        core.RecordComparison(job=1, check=arbitration.check, against=vs_subject.against, a_sha256=vs_subject.a_sha256,
                              b_sha256=vs_subject.b_sha256, verdict="disagree", fraction_off=0.9, max_diff=255, psnr=9.0,
                              entropy="3" * 32, now=node._now())
    )  # fmt: skip
    # A window alone never evicts (Rule 19): the requester renders the whole frame, and b's differs from it too.
    [whole] = of(decided, core.OwnRenderRequested)
    assert whole.purpose == core.Purpose.FRAME
    decided = await node.apply(core.RecordOwnRender(job=1, check=whole.check, sha256="f" * 64, entropy="4" * 32, now=node._now()))
    [vs_frame] = of(decided, core.ComparisonRequested)
    decided = await node.apply(
        core.RecordComparison(job=1, check=whole.check, against=vs_frame.against, a_sha256=vs_frame.a_sha256, b_sha256=vs_frame.b_sha256,
                              verdict="disagree", fraction_off=0.9, max_diff=255, psnr=9.0, entropy="5" * 32, now=node._now())
    )  # fmt: skip
    assert [e.friend for e in of(decided, core.CheaterEvicted)] == ["b"]
    return stale


async def test_a_comparison_voided_by_an_eviction_is_dropped_not_rerun(tmp_path, nursery, autojump_clock, monkeypatch):
    """A pair comparison owed when its verifier is evicted (the core un-assigns that check) is no longer
    owed: the comparator never runs on it, and the reactions settle instead of spinning."""
    node = requester(tmp_path)
    stale = await catch_b(node)
    assert (1, stale.check, "pair") not in node.owed.comparisons  # un-assigned with b's eviction: dropped

    compared: list[tuple[str, str]] = []
    real_compare = blender.compare_output

    def counting_compare(a, b, *args, **kw):
        compared.append((Path(a).name, Path(b).name))
        return real_compare(a, b, *args, **kw)

    monkeypatch.setattr(blender, "compare_output", counting_compare)
    node.comparisons = ComparePool(workers=0)  # in this process, where the count is kept
    nursery.start_soon(node.react_forever, nursery)
    await trio.sleep(120)
    stale_pair = (node.copies[(1, stale.a_sha256)].name, node.copies[(1, stale.b_sha256)].name)
    assert stale_pair not in compared
    assert len(compared) <= 2  # a's own check by the requester, at most: no loop
    assert not node.owed.comparisons and not node.owed.own_renders


class SessionCountingBackend(blender.ModelledBackend):
    """The modelled renderer, counting the sessions opened on it (each a Blender start, with real Blender)."""

    def __init__(self) -> None:
        super().__init__(0.01, resolution=SIZE, frame_range=(1, 8))
        self.sessions: list[blender.Session] = []

    async def start_session(self, blend, job_dir, *, threads=None, limits=blender.Limits()) -> blender.Session:
        session = await super().start_session(blend, job_dir, threads=threads, limits=limits)
        self.sessions.append(session)
        return session


def session_counted(tmp_path: Path, backend: SessionCountingBackend, **settings) -> RequesterNode:
    """A requester whose own renders run on ``backend``, counting the Blender sessions it opens."""
    identity = Identity.load_or_create(tmp_path / "requester")
    return RequesterNode(
        identity=identity, home=tmp_path / "requester", log=SqliteLog(tmp_path / "requester.db"),
        master=Address(host="127.0.0.1", port=9, fingerprint="sha256:" + "0" * 64),
        address=Address(host="127.0.0.1", port=1, fingerprint=identity.fingerprint), backend=backend,
        settings=RequesterSettings(**settings), limits=LIMITS, clock=mock_wall_clock,
    )  # fmt: skip


async def test_the_requesters_own_renders_of_a_job_share_one_blender_session(tmp_path, autojump_clock):
    """Every own render of a job (here each frame's crop check: no other friend may check a lone one) runs in
    one session opened for the job, not a Blender started per window; the session ends with the job."""
    backend = SessionCountingBackend()
    node = session_counted(tmp_path, backend)
    run = Job(node, (1, 2, 3, 4), {"a": "alice2"}, checks_per_friend=1, max_chunk=4, batch_size=4)
    await run.start()
    delivered: list[object] = []
    while (task := await run.ask("a")) is not None:
        delivered += await run.deliver(task)
    own = of(delivered, core.OwnRenderRequested)
    assert len(own) >= 4 and all(e.purpose == "check" for e in own)
    rendered: list[core.OwnRenderReceived] = []
    while node.owed.own_renders:
        for item in list(node.owed.own_renders.values()):
            await node._own_render(item)
        rendered = [e for _, e in events(node.log) if isinstance(e, core.OwnRenderReceived)]
        assert len(rendered) <= 2 * len(own)  # each render settles what it was owed: no loop
    assert {e.check for e in rendered} >= {e.check for e in own}
    assert len(backend.sessions) == 1 and backend.sessions[0].alive
    await node.close_own_session(1)
    assert not backend.sessions[0].alive and not (node._job_dir(1) / "own-blender").exists()


async def test_friends_get_no_frames_while_the_requesters_own_checks_are_behind(tmp_path, autojump_clock):
    """Admission (the core's Rule 21): while the own renders owed would take longer than ``own_backlog`` at the pace
    ours run, a friend that asks gets no frames to render (its job's frames wait in the queue); once our renders
    catch up it renders again. So the frames taken become final at the pace the requester can check them."""
    backend = SessionCountingBackend()
    node = session_counted(tmp_path, backend, own_backlog=0.0)
    run = Job(node, tuple(range(1, 13)), {"a": "alice2"}, checks_per_friend=1, max_chunk=4, batch_size=4)
    await run.start()
    task = await run.ask("a")
    assert task is not None
    await run.deliver(task)  # a lone friend: the requester renders each window of its batch
    assert len(node.owed.own_renders) > 1 and not node._admits()
    head, entropy = node.log.head, node._entropy
    node._entropy = lambda: pytest.fail("a held-back ask with no check to take was decided")  # type: ignore[method-assign]
    assert await node._offer(1, "a", ()) is None  # nothing to render: held back, and nothing decided
    node._entropy = entropy  # type: ignore[method-assign]
    assert node.log.head == head
    assert core.queued(node.state, 1)
    while len(node.owed.own_renders) > 1:
        await node._own_render(next(iter(node.owed.own_renders.values())))
    assert node._admits()  # the one left renders now: nobody waits behind it
    offer = await node._offer(1, "a", ())
    assert isinstance(offer, msg.Work) and offer.frames


async def test_friends_asking_together_are_admitted_only_while_the_backlog_allows(tmp_path):
    """Asks woken together are decided one after another on the draft: each counts the frames the ones before it
    took (``core.own_renders_ahead``), so admission holds at the backlog instead of letting the whole crowd in."""
    node = requester(tmp_path, own_backlog=1.0)  # a window is guessed at 5/8 s: one task's spots (two) exceed it
    friends = {f"f{i}": f"owner{i}" for i in range(6)}
    run = Job(node, tuple(range(1, 49)), friends, checks_per_friend=1, max_chunk=4, batch_size=4)
    await run.start()
    offers: list[object] = []

    async def ask(friend: str) -> None:
        offers.append(await node._offer(1, friend, ()))

    async with trio.open_nursery() as nursery:
        for friend in friends:
            nursery.start_soon(ask, friend)
    assert sum(isinstance(o, msg.Work) for o in offers) == 1 and offers.count(None) == 5
    assert core.own_renders_ahead(node.state) == 2  # its task's spotted windows, to come


class RefusingMaster(Handler):
    """A master that answers every report with one refusal, counting the reports it is sent."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.reports = 0

    async def call(self, peer: Peer, request: object) -> object:
        if isinstance(request, msg.Report):
            self.reports += 1
            raise Refused(self.code, "the payouts exceed the escrow")
        raise Refused("unsupported", type(request).__name__)


class ListeningMaster(Handler):
    """A master that takes every report and keeps it."""

    def __init__(self) -> None:
        self.reports: list[msg.Report] = []

    async def call(self, peer: Peer, request: object) -> object:
        if isinstance(request, msg.Report):
            self.reports.append(request)
            return msg.Ok()
        raise Refused("unsupported", type(request).__name__)


async def test_a_caught_friend_reaches_the_master_while_the_job_runs(tmp_path, nursery, autojump_clock):
    """A friend caught forging is reported to the master at once (evicted, with its evidence, nothing paid), not at
    the job's end: its owner is fined and its trust gone farm-wide while the job still runs; told once, even after a restart."""
    master_id = Identity.load_or_create(tmp_path / "master")
    master = ListeningMaster()
    port = await nursery.start(functools.partial(serve, master_id, "127.0.0.1", 0, master, limits=LIMITS))
    node = requester(tmp_path, Address(host="127.0.0.1", port=port, fingerprint=master_id.fingerprint))
    await catch_b(node)
    nursery.start_soon(node.react_forever, nursery)
    await trio.sleep(30)
    assert not core.is_finished(node.state, 1)  # frame 2 is still to be rendered again: the job runs
    [told] = [r for r in master.reports if not r.close]
    assert told.evicted == ("b",) and "b" in told.evidence and not told.payouts and not told.own_outcomes
    assert not node.owed.evictions and any(isinstance(e, EvictionsReported) for _, e in events(node.log))
    reborn = requester(tmp_path, node.master)
    assert not reborn.owed.evictions  # the log says the master knows


async def finished_job(tmp_path: Path, nursery: trio.Nursery, code: str) -> tuple[RequesterNode, RefusingMaster]:
    master_id = Identity.load_or_create(tmp_path / "master")
    master = RefusingMaster(code)
    port = await nursery.start(functools.partial(serve, master_id, "127.0.0.1", 0, master, limits=LIMITS))
    node = requester(tmp_path, Address(host="127.0.0.1", port=port, fingerprint=master_id.fingerprint))
    run = Job(node, (1,), {"a": "bob"}, checks_per_friend=0)
    await run.start()
    decided = await run.deliver(await run.ask("a"))
    assert of(decided, core.JobFinished)
    return node, master


async def test_a_report_the_master_refuses_for_good_is_logged_once_and_not_retried(tmp_path, nursery, autojump_clock):
    """A report refused for a lasting reason is sent once, logged once as ReportRefused, shown in the
    client's progress and in the replayed story, and never sent again (even after a restart)."""
    node, master = await finished_job(tmp_path, nursery, "over-escrow")
    nursery.start_soon(node.react_forever, nursery)
    await trio.sleep(300)
    assert master.reports == 1
    refusals = [e for _, e in events(node.log) if isinstance(e, ReportRefused)]
    assert refusals == [ReportRefused(job=1, code="over-escrow", reason="the payouts exceed the escrow")]
    assert "over-escrow" in node._progress(node.jobs[1]).problem
    assert any("REFUSED the report (over-escrow" in line["text"] for line in audit(tmp_path / "requester.db")["story"])
    reborn = requester(tmp_path, node.master)
    assert not reborn.owed.reports and "over-escrow" in reborn._progress(reborn.jobs[1]).problem


async def test_a_failing_master_is_redialled_with_a_capped_backoff(tmp_path, nursery, autojump_clock):
    """A report the master cannot take now ("internal": it failed) is retried, backing off up to
    retry_max: a handful of dials in five minutes, not a loop, and never logged as refused."""
    node, master = await finished_job(tmp_path, nursery, "internal")
    nursery.start_soon(node.react_forever, nursery)
    await trio.sleep(300)
    # 1 s doubling, jittered to half at worst, capped at 30 s: 300 s hold fewer than 30 dials, and at least 10.
    assert 10 <= master.reports <= 30
    assert not any(isinstance(e, (ReportRefused, ReportDelivered)) for _, e in events(node.log))
    assert 1 in node.owed.reports


class GrantingMaster(Handler):
    """A master that grants one friend of standing (trusted, a long clean run) to every job that asks."""

    async def call(self, peer: Peer, request: object) -> object:
        if isinstance(request, msg.AskFriends):
            friend = msg.GrantedFriendInfo(friend="carol/pc", user="carol", key="key-carol", reputation=7, clean_run=30)
            return msg.FriendsGranted(job=request.job, friends=(friend,), shortfall=0)
        raise Refused("unsupported", type(request).__name__)


@pytest.mark.parametrize("path", ["grow", "more friends"])
async def test_every_grant_path_keeps_the_friends_standing(tmp_path, nursery, path):
    """A friend that joins a running job (it grows, or replaces an evicted friend) keeps the reputation and
    clean run the master granted it with: trusted friends are not treated as strangers on any path."""
    master_id = Identity.load_or_create(tmp_path / "master")
    port = await nursery.start(functools.partial(serve, master_id, "127.0.0.1", 0, GrantingMaster(), limits=LIMITS))
    node = requester(tmp_path, Address(host="127.0.0.1", port=port, fingerprint=master_id.fingerprint))
    run = Job(node, (1, 2, 3, 4), {"a": "bob"})
    await run.start()
    await node.apply(JobWants(job=1, friends=2))
    if path == "grow":
        await node._grow(1, node._short_of(1))
    else:
        await node.apply(core.DropFriend(job=1, friend="a", entropy=node._entropy(), now=node._now()))  # none left: more wanted
        await node._more_friends(node.owed.more_friends[1])
    carol = node.state.jobs[1].friends["carol/pc"]
    assert (carol.reputation, carol.clean_run) == (7, 30)
    assert node.keys[1]["carol/pc"] == "key-carol"


# ------------------------------------------------------------ group commit


class CountingLog(SqliteLog):
    """requester.db, counting its transactions."""

    appends = 0

    def append(self, events):
        self.appends += bool(events)
        return super().append(events)


async def test_calls_ready_together_commit_in_one_transaction_each_deciding_on_the_others(tmp_path):
    """Friends asking for work at the same moment are decided one after another on the draft (no frame
    goes out twice) and committed in one append; nothing is evolved before that commit."""
    node = requester(tmp_path)
    node.log = CountingLog(tmp_path / "counted.db")
    friends = {f"f{i}": f"owner{i}" for i in range(6)}
    run = Job(node, tuple(range(1, 25)), friends, checks_per_friend=0, max_chunk=4)
    await run.start()
    before = node.log.appends
    got: dict[str, core.TaskAssigned | None] = {}
    committed_at_decision: list[int] = []

    async def ask(friend: str) -> None:
        committed_at_decision.append(len(node.state.jobs[1].tasks.by_number))
        got[friend] = await run.ask(friend)

    async with trio.open_nursery() as nursery:
        for friend in friends:
            nursery.start_soon(ask, friend)
    assert node.log.appends == before + 1
    assert committed_at_decision == [0] * len(friends)  # each decided before anything was committed
    frames = [frame for task in got.values() for frame in task.frames]
    assert all(got.values()) and len(frames) == len(set(frames))  # six tasks, no frame in two of them
    assert {e.task for _, e in events(node.log) if isinstance(e, core.TaskAssigned)} == {t.task for t in got.values()}


async def test_a_refused_command_withdraws_every_event_of_its_call(tmp_path):
    """When a later command of one call is refused, the earlier ones' events are neither committed nor left
    in the draft that the next decision reads."""
    node = requester(tmp_path)
    run = Job(node, (1, 2, 3, 4), {"a": "alice2", "b": "bob"}, checks_per_friend=0, max_chunk=4)
    await run.start()
    head = node.log.head
    with pytest.raises(Refused) as refused:
        await node.apply(
            core.AskForTask(job=1, friend="a", entropy="1" * 32, now=node._now()),
            core.AskForTask(job=1, friend="nobody", entropy="2" * 32, now=node._now()),
        )
    assert refused.value.code != "internal"
    assert node.log.head == head and not node.state.jobs[1].tasks.by_number
    task = await run.ask("b")  # decided on a draft without a's withdrawn task
    assert task is not None and task.task == 1 and task.frames[0] == 1  # a's task number and frames were never taken


async def test_a_friend_that_asks_before_its_job_is_accepted_here_waits_for_it(tmp_path, autojump_clock):
    """The master hands a friend its assignment as soon as it grants it, which may be before the requester has logged
    the job it asked for: while a submit is being accepted the friend's call waits for the job (it was refused as
    "not hosted here" and the friend left the job); with no submit under way a job unknown here is refused at once."""
    master = Identity.load_or_create(tmp_path / "master")
    node = requester(tmp_path, master=Address(host="127.0.0.1", port=9, fingerprint=master.fingerprint))
    friend = Identity.load_or_create(tmp_path / "friend")
    peer = Peer(fingerprint=friend.fingerprint, public_key=friend.public_bytes, host="127.0.0.1")

    def signed(job: int) -> SignedAssignment:
        return sign_assignment(master, Assignment(job=job, friend="a", friend_key=friend.fingerprint, requester_key=node.identity.fingerprint,
                                                  blend_sha256="0" * 64, expires=mock_wall_clock() + 3600))  # fmt: skip

    node._opening_now.add("an opening")
    checked: list[tuple[float, int]] = []

    async def ask() -> None:
        assignment = await node._check(peer, signed(1))
        checked.append((trio.current_time(), assignment.job))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.sleep(0.5)
        await Job(node, (1, 2), {"a": "alice2"}).start()  # the job accepted: its commit wakes the call
    assert checked == [(pytest.approx(0.5), 1)]
    node._opening_now.clear()
    started = trio.current_time()
    with pytest.raises(Refused, match="not hosted here"):
        await node._check(peer, signed(7))
    assert trio.current_time() == started  # nothing under way: refused at once
    node._opening_now.add("another opening")
    forged = sign_assignment(friend, signed(7).assignment)  # not the master's signature, for a job not hosted here
    with pytest.raises(Refused):
        await node._check(peer, forged)
    assert trio.current_time() == started  # an assignment the master did not sign is never waited for


async def test_a_tick_of_a_job_whose_end_is_decided_but_not_committed_is_skipped(tmp_path):
    """The timers read the running jobs from the committed state, and decide on the draft: a job cancelled
    (or finished) on the draft and not yet committed is not ticked, and the timer carries on."""
    node = requester(tmp_path)
    run = Job(node, (1, 2), {"a": "alice2", "b": "bob"}, checks_per_friend=0, max_chunk=1)
    await run.start()
    node.decide(lambda draft: core.decide(draft, core.AskForTask(job=1, friend="a", entropy="1" * 32, now=node._now())))
    node.decide(lambda draft: core.decide(draft, core.CancelJob(job=1, now=node._now())))  # pending: the state still runs it
    assert 1 in core.running_jobs(node.state)
    with pytest.raises(Refused, match="job-state"):
        node.decide(lambda draft: core.decide(draft, core.Tick(job=1, entropy="2" * 32, now=node._now())))
    assert not await node._timed(core.Tick(job=1, entropy="3" * 32, now=node._now()))
    assert not await node._timed(core.DropFriend(job=1, friend="a", entropy="4" * 32, now=node._now()))
    assert 1 not in core.running_jobs(node.state)  # the cancel was committed with them


async def test_a_copy_whose_pixels_do_not_decode_is_found_where_it_is_compared(tmp_path, nursery, caplog):
    """Arrival checks a frame's container only: a well-formed PNG whose image data is a decompression bomb is taken,
    and the comparison that decodes it (in a worker process) finds it: the pair disagrees, the requester's own render
    judges, and its sender alone is evicted."""
    node = requester(tmp_path)
    bomb = _idat_bomb(SIZE[0], SIZE[1], 64 << 20)
    (tmp_path / "bomb.png").write_bytes(bomb)
    blender.check_output(tmp_path / "bomb.png", blender.PNG8, width=SIZE[0], height=SIZE[1])  # what arrival checks: it passes
    run = Job(node, (1, 2), {"a": "alice2", "b": "bob"}, checks_per_friend=1, check_timing="end", max_chunk=1, crop_checks=False)
    await run.start()
    ta, tb = await run.ask("a"), await run.ask("b")
    await run.deliver(ta)
    await run.deliver(tb, data=bomb)
    ca, cb = await run.ask("a"), await run.ask("b")
    assert ca.kind == cb.kind == "check"
    await run.deliver(cb)
    await run.deliver(ca)
    nursery.start_soon(node.react_forever, nursery)

    def evicted() -> list[str]:
        return [e.friend for _, e in events(node.log) if isinstance(e, core.CheaterEvicted)]

    with trio.fail_after(300):  # real time: the comparisons run in worker processes, which trio's mock clock cannot wait for
        while not evicted() or node.owed.comparisons or node.owed.own_renders:
            await node.changed()
    made = [e for _, e in events(node.log) if isinstance(e, core.ComparisonMade)]
    assert any(e.figures.verdict == "disagree" and e.figures.max_diff == 255 for e in made)  # b's copy did not decode
    assert "decompression bomb" in caplog.text
    assert evicted() == ["b"]


async def test_a_copy_changed_on_disk_is_never_compared(tmp_path, monkeypatch):
    """A stored copy whose bytes no longer hash to the logged sha256 is never compared: its comparison stays
    owed (retried with backoff) and nothing is settled on those bytes."""
    node = requester(tmp_path)
    run = Job(node, (1, 2), {"a": "alice2", "b": "bob"}, checks_per_friend=1, check_timing="end", max_chunk=1)
    await run.start()
    ta, tb = await run.ask("a"), await run.ask("b")
    await run.deliver(ta)
    await run.deliver(tb, "black")  # a's honest check copy of it differs by hash: a comparison is owed
    ca, cb = await run.ask("a"), await run.ask("b")
    assert ca.kind == cb.kind == "check"
    [requested] = of(await run.deliver(ca), core.ComparisonRequested)
    owed = node.owed.comparisons[(1, requested.check, requested.against)]
    tampered = node.copies[(1, owed.a_sha256)]
    tampered.write_bytes(blender.forge_frame("noise", width=SIZE[0], height=SIZE[1], other=None))

    compared: list[str] = []
    real_compare = blender.compare_output

    def counting_compare(a, b, *args, **kw):
        compared.extend((Path(a).name, Path(b).name))
        return real_compare(a, b, *args, **kw)

    monkeypatch.setattr(blender, "compare_output", counting_compare)
    node.comparisons = ComparePool(workers=0)  # in this process, where the count is kept
    await node._compare(owed)  # the reaction itself, as react_forever runs it
    assert tampered.name not in compared
    assert node.owed.comparisons.get((1, owed.check, owed.against)) == owed
    assert not any(isinstance(e, core.ComparisonMade) and e.check == owed.check for _, e in events(node.log))


# ------------------------------------------------------------ one link to the master


async def with_bob(tmp_path: Path, nursery) -> World:
    """A master and a requester running, and bob's friend registered and free: a submit is granted it."""
    world = World(tmp_path)
    await world.start(nursery)
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    return world


async def test_every_call_to_the_master_goes_over_one_session_and_calls_run_together(tmp_path, nursery):
    """A requester's calls to the master (account checks for uploads, submits, reports) share one session,
    several in flight at once; a session the master closed is redialled, and a reply is of the type asked."""
    world = await with_bob(tmp_path, nursery)
    node = world.requester_node
    await world.alice_submits()  # an upload (the account is asked), then a submit (account, then friends)
    key = world.people["alice"].fingerprint
    async with trio.open_nursery() as calls:  # many at once: no lock, no new handshake
        for _ in range(8):
            calls.start_soon(node._ask_master, msg.AccountOf(key=key))
    assert node.master_link.dials == 1
    info = await node._ask_master(msg.AccountOf(key=key))
    assert isinstance(info, msg.AccountInfo) and info.user == "alice"
    session = node.master_link._session
    assert session is not None
    node.master_link._lost.set()  # as when the master closes an idle session
    await trio.testing.wait_all_tasks_blocked()
    assert (await node._ask_master(msg.AccountOf(key=key))).user == "alice"
    assert node.master_link.dials == 2


async def test_a_heavy_files_deadlines_count_the_frame_time_measured_at_submit(tmp_path, nursery, monkeypatch):
    """The requester's estimate (a few seconds a frame) is set for light files; a file whose frame took 40 s in the
    requester's own measurement at submit gets deadlines of three times that a frame, so friends' tasks of it are
    not timed out and given back for ever. A light file keeps the estimate."""
    world = await with_bob(tmp_path, nursery)
    node = world.requester_node
    monkeypatch.setattr(type(BACKEND), "windows_are_frames", False)  # measured at submit, as with real Blender
    took = [40.0]

    async def measured(backend, blend_sha256, manifest, info, frame) -> blender.CropMeasure:
        equal = blender.Comparison(verdict="identical", fraction_off=0.0, max_diff=0, psnr=float("inf"))
        box = blender.Window(left=0, top=0, width=16, height=9)
        return blender.CropMeasure(frame=frame, windows=(box,), comparisons=(equal,), frame_seconds=took[0], window_seconds=took[0] / 10)

    monkeypatch.setattr(node, "_measure_crops", measured)
    paces = []
    for seconds in (40.0, 0.5):
        took[0] = seconds
        blend = await world.upload("alice")
        await world.call("alice", world.requester, msg.Submit(user="alice", blend_sha256=blend, friends=1, checks_per_friend=1))
        paces.append(dict(node._own_pace))
    started = [e for _, e in events(node.log) if isinstance(e, core.JobStarted)]
    assert [e.settings.seconds_per_frame for e in started] == [120.0, node.settings.job.seconds_per_frame]
    # Admission's pace (Rule 21): the first measurement replaces the guess, later ones move the average.
    assert paces[0] == {False: 4.0, True: 40.0}
    assert paces[1] == {False: pytest.approx(0.8 * 4.0 + 0.2 * 0.05), True: pytest.approx(0.8 * 40.0 + 0.2 * 0.5)}


async def test_a_file_the_requesters_own_render_fails_is_refused_before_the_master_is_asked(tmp_path, nursery, monkeypatch):
    """The measurement at submit renders the file's first frame; when Blender cannot ("Cannot render, no camera"), the
    submit is refused with Blender's words and no job is opened at the master, so no point is escrowed."""
    world = await with_bob(tmp_path, nursery)
    node = world.requester_node
    monkeypatch.setattr(type(BACKEND), "windows_are_frames", False)  # measured at submit, as with real Blender

    async def cannot(*args, **kw) -> blender.CropMeasure:
        raise blender.BlenderError("Blender exited with status 1: Cannot render, no camera")

    monkeypatch.setattr(blender, "measure_crops", cannot)
    blend = await world.upload("alice")
    with pytest.raises(RemoteError) as refused:
        await world.call("alice", world.requester, msg.Submit(user="alice", blend_sha256=blend, friends=1, checks_per_friend=1))
    assert refused.value.code == "bad-blend" and "Cannot render, no camera" in refused.value.reason
    assert not world.master_node.state.jobs and not node.jobs
    assert world.master_node.state.accounts["alice"].balance == 100
