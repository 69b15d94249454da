"""Who may do what: the master and requester refuse strangers, impostors and spenders of others' points.

The real master and requester nodes serve on 127.0.0.1 over the real
transports; the requester renders with the modelled backend (no Blender needed
to check permissions).
"""

from __future__ import annotations

import functools
import os
import time

import pytest
import trio

from frender.apps import messages as msg
from frender.apps.master import MasterNode
from frender.apps.requester import RequesterNode, RequesterSettings
from frender.blender import ModelledBackend, modelled_frame
from frender.core import master as core
from frender.core import job as job_core
from frender.core.profile import RenderProfile
from frender.store import SqliteLog
from frender.transports import (
    Address,
    Assignment,
    FileHeader,
    Identity,
    Limits,
    RemoteError,
    connect,
    file_header,
    get_file,
    put_file,
    serve,
    sign_assignment,
)

LIMITS = Limits(max_per_host=1000)
BACKEND = ModelledBackend(0.01, resolution=(32, 18), frame_range=(1, 4))

# Trust from one report of the requester's own checks: these tests are about who is chosen, not how trust is earned
# (three jobs of two requesters, decay, holds: tests/core/test_master_trust.py).
ONE_REPORT_TRUST = dict(trust_jobs=1, trust_requesters=1, trust_per_job=0)


class World:
    """A master and a requester on 127.0.0.1, and a few people with keys."""

    def __init__(
        self,
        tmp_path,
        settings: RequesterSettings = RequesterSettings(),
        bound: tuple[str, ...] = ("alice", "bob"),
        backend=None,
        *,
        clock=time.time,
        requester_log=SqliteLog,
    ) -> None:
        self.tmp = tmp_path
        self.settings = settings
        self.bound = bound
        self.backend = backend or BACKEND
        self.clock = clock  # both nodes' wall clock (a test under trio's MockClock passes one that follows it)
        self.requester_log = requester_log
        self.people = {name: Identity.load_or_create(tmp_path / name) for name in ("alice", "bob", "mallory")}

    async def start(self, nursery: trio.Nursery) -> None:
        master_id = Identity.load_or_create(self.tmp / "master")
        settings = core.MasterSettings(friend_timeout=60, **ONE_REPORT_TRUST)
        self.master_node = MasterNode(master_id, SqliteLog(self.tmp / "master.db"), settings, clock=self.clock)
        port = await nursery.start(functools.partial(serve, master_id, "127.0.0.1", 0, self.master_node, limits=LIMITS))
        self.master = Address(host="127.0.0.1", port=port, fingerprint=master_id.fingerprint)
        requester_id = Identity.load_or_create(self.tmp / "requester")
        self.master_node.apply(core.TrustRequester(key=requester_id.fingerprint, name="requester"))
        for user in self.bound:  # their owners bound them; mallory has no account
            self.master_node.apply(core.CreateAccount(user=user, key=self.people[user].fingerprint))
        if "alice" in self.bound:
            self.master_node.apply(core.GrantPoints(user="alice", key=self.people["alice"].fingerprint, amount=100))
        node = RequesterNode(
            identity=requester_id,
            home=self.tmp / "requester",
            log=self.requester_log(self.tmp / "requester.db"),
            master=self.master,
            address=Address(host="127.0.0.1", port=1, fingerprint=requester_id.fingerprint),
            backend=self.backend,
            settings=self.settings,
            limits=LIMITS,
            clock=self.clock,
        )
        port = await nursery.start(functools.partial(serve, requester_id, "127.0.0.1", 0, node, limits=LIMITS))
        node.address = self.requester = Address(host="127.0.0.1", port=port, fingerprint=requester_id.fingerprint)
        self.requester_node = node

    def run_requester(self, nursery: trio.Nursery) -> None:
        """The requester's timers and reactions, as ``run_requester`` starts them: deadlines, growth, what is owed."""
        node = self.requester_node
        for worker in (node.tick_forever, node.grow_forever):
            nursery.start_soon(worker)
        nursery.start_soon(node.react_forever, nursery)

    def person(self, name: str) -> Identity:
        if name not in self.people:
            self.people[name] = Identity.load_or_create(self.tmp / name)
        return self.people[name]

    async def call(self, who: str, where: Address, request: object) -> object:
        self.person(who)
        async with connect(where, self.people[who], limits=LIMITS) as session:
            return await session.call(request)

    async def register_bob(self) -> None:
        await self.call("bob", self.master, msg.RegisterFriend(user="bob", name="pc", profile=await BACKEND.probe()))

    async def upload(self, who: str, content: bytes = b"modelled scene") -> str:
        blend = self.tmp / f"{who}.blend"
        blend.write_bytes(content)
        header = await file_header(blend, kind="upload", job="upload")
        upload = FileHeader(kind="upload", job=header.sha256, size=header.size, sha256=header.sha256)
        await put_file(self.requester, self.person(who), upload, blend, limits=LIMITS)
        return header.sha256

    async def alice_submits(self, friends: int = 1, checks: int = 1) -> msg.Submitted:
        self.blend_sha256 = await self.upload("alice")
        return await self.call("alice", self.requester, msg.Submit(user="alice", blend_sha256=self.blend_sha256, friends=friends, checks_per_friend=checks))


@pytest.fixture
async def world(tmp_path, nursery):
    world = World(tmp_path)
    await world.start(nursery)
    return world


async def refused(code: str, call) -> RemoteError:
    with pytest.raises(RemoteError) as caught:
        await call
    assert caught.value.code == code, caught.value
    return caught.value


async def test_unregistered_friend_and_wrong_key_are_refused(world):
    """Heartbeats from an unknown friend, or from another key than the friend's, are refused."""
    await refused("unknown-friend", world.call("mallory", world.master, msg.Heartbeat(friend="mallory/pc")))
    await world.register_bob()
    await refused("wrong-key", world.call("mallory", world.master, msg.Heartbeat(friend="bob/pc")))
    reply = await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    assert isinstance(reply, msg.HeartbeatReply) and reply.assignment is None


async def test_a_username_belongs_to_its_first_key(world):
    """A username taken by another key cannot register friends."""
    await world.register_bob()
    profile = await BACKEND.probe()
    await refused("name-taken", world.call("mallory", world.master, msg.RegisterFriend(user="bob", name="evil", profile=profile)))


async def test_untrusted_requesters_and_non_operators_are_refused(world):
    """Only trusted requesters get friends; only the operator grants points or trusts keys."""
    ask = msg.AskFriends(
        submitter="mallory", submitter_key="x", frames=1, want=1, profile=await BACKEND.probe(), blend_sha256="0" * 64, address="x"
    )
    await refused("untrusted", world.call("mallory", world.master, ask))
    await refused("not-operator", world.call("mallory", world.master, msg.Grant(user="mallory", amount=10**6)))
    await refused("not-operator", world.call("mallory", world.master, msg.Trust(key=world.people["mallory"].fingerprint, name="me")))


async def test_nobody_spends_another_users_points(world):
    """Submitting as alice with mallory's key is refused; alice's balance is untouched."""
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    submitted = await world.alice_submits()
    await world.call("mallory", world.master, msg.CreateAccount(user="mallory"))
    world.master_node.apply(core.GrantPoints(user="mallory", key=world.people["mallory"].fingerprint, amount=5))
    balance = world.master_node.state.accounts["alice"].balance
    await refused(
        "name-taken",
        world.call("mallory", world.requester, msg.Submit(user="alice", blend_sha256=world.blend_sha256, friends=1)),
    )
    assert world.master_node.state.accounts["alice"].balance == balance
    await refused("unknown-job", world.call("mallory", world.requester, msg.Progress(job=submitted.job)))


async def test_strangers_cannot_fetch_the_blend_push_frames_or_take_frames(world, tmp_path):
    """Only the assigned friend fetches the job's file and delivers frames; only the submitter gets frames."""
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    job = (await world.alice_submits()).job
    mallory = world.people["mallory"]
    with pytest.raises(RemoteError) as caught:
        await get_file(world.requester, mallory, FileHeader(kind="blend", job=job), tmp_path / "stolen.blend", max_size=1 << 20)
    assert caught.value.code == "not-assigned"
    frame = tmp_path / "fake.png"
    frame.write_bytes(modelled_frame(1, width=32, height=18))
    header = await file_header(frame, kind="frame", job=job, frame=1)
    with pytest.raises(RemoteError) as caught:
        await put_file(world.requester, mallory, header, frame, limits=LIMITS)
    assert caught.value.code == "not-assigned"
    with pytest.raises(RemoteError):
        await get_file(world.requester, mallory, FileHeader(kind="frame", job=job, frame=1), tmp_path / "f.png", max_size=1 << 20)
    # Bob, the assigned friend, may fetch the file.
    wanted = FileHeader(kind="blend", job=job, sha256=world.blend_sha256)
    got = await get_file(world.requester, world.people["bob"], wanted, tmp_path / "ok.blend", max_size=1 << 20)
    assert got.read_bytes() == b"modelled scene"


async def test_forged_and_foreign_assignments_get_no_work(world):
    """An assignment not signed by the master, or naming another friend or requester, gets no work."""
    await world.register_bob()
    reply = await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    assert reply.assignment is None
    job = (await world.alice_submits()).job
    reply = await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    genuine = reply.assignment
    assert genuine is not None and genuine.assignment.job == job
    work = await world.call("bob", world.requester, msg.WantWork(assignment=genuine))
    assert isinstance(work, msg.Work)
    forged = sign_assignment(world.people["mallory"], genuine.assignment)
    await refused("assignment", world.call("bob", world.requester, msg.WantWork(assignment=forged)))
    # Bob's genuine assignment presented by mallory's key.
    await refused("assignment", world.call("mallory", world.requester, msg.WantWork(assignment=genuine)))
    expired = Assignment(**{**_fields(genuine.assignment), "expires": time.time() - 1})
    await refused("assignment", world.call("bob", world.requester, msg.WantWork(assignment=sign_assignment(world.master_node.identity, expired))))


def _fields(assignment: Assignment) -> dict:
    return {name: getattr(assignment, name) for name in ("job", "friend", "friend_key", "requester_key", "blend_sha256", "expires")}


async def test_away_and_refusals_reach_the_master_and_bad_ones_are_refused(world):
    """A friend's heartbeat saying "paused" shows in the master's status; an overlong refusal list is refused, changing nothing."""
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc", away="paused"))
    reply = await world.call("alice", world.master, msg.Status())
    assert [(f.friend, f.away) for f in reply.friends] == [("bob/pc", "paused")]
    too_many = tuple(f"user{i}" for i in range(65))
    error = await refused("bad-heartbeat", world.call("bob", world.master, msg.Heartbeat(friend="bob/pc", refuse=too_many)))
    assert "at most 64 users" in error.reason
    reply = await world.call("alice", world.master, msg.Status())
    assert [f.away for f in reply.friends] == ["paused"]  # the refused heartbeat changed nothing


# ----------------------------------------------------------- attacks, by hand over the real protocol


async def bob_renders(world: World, job: int, signed, tmp_path, first: msg.Work) -> None:
    """Bob delivers every frame of his tasks honestly, asking for work until the job has none left for him."""
    work = first
    while isinstance(work, msg.Work):
        for f in work.frames:
            path = tmp_path / f"f{f}.png"
            path.write_bytes(modelled_frame(f, width=32, height=18))
            stored = await put_file(world.requester, world.people["bob"], await file_header(path, kind="frame", job=job, frame=f), path, limits=LIMITS)
            assert stored.ok
        work = await world.call("bob", world.requester, msg.WantWork(assignment=signed))


class CountingBackend(ModelledBackend):
    """The modelled renderer, counting inspections: a refusal must come before any Blender run."""

    inspections = 0

    async def inspect(self, blend, *, limits=None):
        type(self).inspections += 1
        return await super().inspect(blend)


async def test_a_stranger_cannot_bind_alice_or_spend_her_grant(tmp_path, nursery):
    """Before alice binds her name, a stranger's friend cannot take it and the operator cannot grant to it; after, it is hers."""
    world = World(tmp_path, bound=("bob",))
    await world.start(nursery)
    profile = await BACKEND.probe()
    operator = world.master_node.identity
    world.people["operator"] = operator
    await refused("unknown-user", world.call("mallory", world.master, msg.RegisterFriend(user="alice", name="pc", profile=profile)))
    await refused("unknown-user", world.call("operator", world.master, msg.Grant(user="alice", amount=500)))
    created = await world.call("alice", world.master, msg.CreateAccount(user="alice"))
    assert created.key == world.people["alice"].fingerprint
    await refused("name-taken", world.call("mallory", world.master, msg.CreateAccount(user="alice")))
    await world.call("operator", world.master, msg.Grant(user="alice", key=world.people["alice"].fingerprint, amount=500))
    await refused("name-taken", world.call("mallory", world.master, msg.RegisterFriend(user="alice", name="pc", profile=profile)))
    await world.call("mallory", world.master, msg.CreateAccount(user="mallory"))
    await world.call("operator", world.master, msg.Grant(user="mallory", key=world.people["mallory"].fingerprint, amount=5))
    sha = await world.upload("mallory")
    await refused("name-taken", world.call("mallory", world.requester, msg.Submit(user="alice", blend_sha256=sha, friends=1)))
    assert world.master_node.state.accounts["alice"].balance == 500
    # status: each user sees its own balance, the operator all, everyone the totals.
    seen = await world.call("mallory", world.master, msg.Status())
    assert seen.balances == {"mallory": 5} and seen.total_balance == 505 and seen.granted == 505
    assert (await world.call("operator", world.master, msg.Status())).balances == {"alice": 500, "bob": 0, "mallory": 5}


async def test_four_fresh_names_cannot_take_a_job_while_trusted_friends_are_live(world):
    """Sybils: trusted friends are chosen first and the fresh names stay a minority of the job."""
    profile = await BACKEND.probe()
    honest, sybils = ("t1", "t2", "t3"), ("s0", "s1", "s2", "s3")
    for name in honest + sybils:
        await world.call(name, world.master, msg.CreateAccount(user=name))
    for name in honest:
        await world.call(name, world.master, msg.RegisterFriend(user=name, name="pc", profile=profile))
        await world.call(name, world.master, msg.Heartbeat(friend=f"{name}/pc"))
    # A first job on the honest friends alone, whose report says the requester's own renders passed them.
    world.people["requester"] = Identity.load_or_create(world.tmp / "requester")
    ask = msg.AskFriends(
        submitter="alice", submitter_key=world.people["alice"].fingerprint, frames=4, want=3, profile=profile, blend_sha256="0" * 64, address="x"
    )
    first = await world.call("requester", world.master, ask)
    passed = (True,) * world.master_node.state.settings.trust_threshold
    await world.call("requester", world.master, msg.Report(job=first.job, own_outcomes={f"{n}/pc": passed for n in honest}))
    for name in honest + sybils:
        if name in sybils:
            await world.call(name, world.master, msg.RegisterFriend(user=name, name="pc", profile=profile))
        await world.call(name, world.master, msg.Heartbeat(friend=f"{name}/pc"))
    job = (await world.alice_submits(friends=4)).job
    chosen = world.master_node.state.jobs[job].friends
    fresh = [f for f in chosen if f.split("/")[0] in sybils]
    assert {f"{n}/pc" for n in honest} <= set(chosen)
    assert len(fresh) < len(chosen) - len(fresh)


async def test_a_held_second_put_of_a_delivered_frame_changes_nothing_served(world, tmp_path):
    """A put opened while the frame was live and completed after it is final is refused; the served frame is the accepted one."""
    from frender.transports._files import send_file
    from frender.transports.client import _dial, _expect, _opened
    from frender.transports.messages import OpenPut, Ready, Reply

    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    job = (await world.alice_submits(checks=0)).job
    signed = (await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))).assignment
    work = await world.call("bob", world.requester, msg.WantWork(assignment=signed))
    frame = work.frames[0]
    honest, forged = tmp_path / "honest.png", tmp_path / "forged.png"
    honest.write_bytes(modelled_frame(frame, width=32, height=18))
    forged.write_bytes(modelled_frame(frame + 7, width=32, height=18))
    forged_header = await file_header(forged, kind="frame", job=job, frame=frame)
    stream = await _dial(world.requester, LIMITS)
    async with _opened(stream, world.people["bob"], world.requester.fingerprint, OpenPut(header=forged_header), LIMITS) as held:
        await _expect(held, Ready)  # accepted while the frame was live; now held open
        await bob_renders(world, job, signed, tmp_path, work)
        assert job_core.final_copy(world.requester_node.state, job, frame) is not None
        await send_file(held, forged, forged_header.size)
        with pytest.raises(RemoteError) as caught:
            await _expect(held, Reply)
        assert caught.value.code == "already-stored"
    got = await get_file(world.requester, world.people["alice"], FileHeader(kind="frame", job=job, frame=frame), tmp_path / "got.png", max_size=1 << 20)
    assert got.read_bytes() == honest.read_bytes()


async def test_a_tampered_stored_frame_is_never_served(world, tmp_path):
    """Every file served is checked against its logged sha256: a stored copy changed on disk is refused, not sent."""
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    job = (await world.alice_submits(checks=0)).job
    signed = (await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))).assignment
    work = await world.call("bob", world.requester, msg.WantWork(assignment=signed))
    await bob_renders(world, job, signed, tmp_path, work)
    frame = work.frames[0]
    final = job_core.final_copy(world.requester_node.state, job, frame)
    world.requester_node.copies[(job, final.sha256)].write_bytes(modelled_frame(frame + 3, width=32, height=18))
    with pytest.raises(RemoteError) as caught:
        await get_file(world.requester, world.people["alice"], FileHeader(kind="frame", job=job, frame=frame), tmp_path / "got.png", max_size=1 << 20)
    assert caught.value.code == "corrupt"


async def test_anonymous_and_penniless_uploads_are_refused_before_any_blender_run(tmp_path, nursery):
    """A key with no account, or an account without points, stores nothing and starts no inspection; quota and expiry hold."""
    CountingBackend.inspections = 0
    settings = RequesterSettings(upload_quota=40, upload_ttl=3600.0)
    world = World(tmp_path, settings=settings, backend=CountingBackend(0.01, resolution=(32, 18), frame_range=(1, 4)))
    await world.start(nursery)
    with pytest.raises(RemoteError) as caught:
        await world.upload("mallory")
    assert caught.value.code == "no-account"
    assert not list((tmp_path / "requester").glob("uploads/*.blend"))
    await refused("no-account", world.call("mallory", world.requester, msg.Submit(user="mallory", blend_sha256="0" * 64)))
    await world.call("mallory", world.master, msg.CreateAccount(user="mallory"))
    with pytest.raises(RemoteError) as caught:
        await world.upload("mallory")
    assert caught.value.code == "short-balance"
    await refused("short-balance", world.call("mallory", world.requester, msg.Submit(user="mallory", blend_sha256="0" * 64)))
    assert CountingBackend.inspections == 0
    # alice has points: her uploads are stored, up to her quota (40 bytes here).
    await world.upload("alice", b"x" * 30)
    with pytest.raises(RemoteError) as caught:
        await world.upload("alice", b"y" * 30)
    assert caught.value.code == "quota"
    # Unreferenced uploads expire: an old one is gone at the next upload, and frees the quota.
    old = next((tmp_path / "requester" / "uploads").glob("*.blend"))
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    await world.upload("alice", b"y" * 30)
    assert not old.exists()


async def test_a_long_profile_is_refused_and_status_pages_many_friends(world):
    """600 KB strings from a peer are refused at the message layer; status with many long-named friends still works, paged."""
    from frender.apps.client import status

    profile = await BACKEND.probe()
    huge = RenderProfile(blender_version="5" * 600_000, build_hash="x")
    await refused("bad-input", world.call("bob", world.master, msg.RegisterFriend(user="bob", name="pc", profile=huge)))
    await refused("bad-input", world.call("bob", world.master, msg.RegisterFriend(user="bob", name="n" * 300, profile=profile)))
    longest = RenderProfile(blender_version="5" * 256, build_hash="h" * 256, device="d" * 256, cpu_class="c" * 256)
    node = world.master_node
    for i in range(900):  # names too long to register today, as a log from before the name alphabet may hold them
        registered = core.FriendRegistered(friend=f"bob/{i:03d}" + "n" * 240, user="bob", profile=longest, capacity=1, now=time.time())
        node.log.append([registered])
        for state in (node.state, node._draft):
            core.evolve(state, registered)
    reply = await status(world.master, world.tmp / "bob")
    assert len(reply.friends) == 900 and reply.balances == {"bob": 0}
    assert (await world.call("bob", world.master, msg.Status())).pages > 1


@pytest.mark.parametrize(
    "request_",
    [
        msg.RegisterFriend(user="bob", name="pc", profile=RenderProfile(blender_version="5.0.1", build_hash="x"), capacity=2**64 - 1),
        msg.RegisterFriend(user="bob", name="pc", profile=RenderProfile(blender_version="5.0.1", build_hash="x"), capacity=0),
        msg.Heartbeat(friend="bob/pc", wait=float("nan")),
        msg.Heartbeat(friend="bob/pc", wait=1e308),
        msg.Heartbeat(friend="bob/pc", wait=-1.0),
        msg.Heartbeat(friend="bob/pc", wait=float("inf")),
    ],
)
async def test_odd_numbers_are_refused(world, request_):
    """Capacity beyond 1..1024 and a heartbeat wait that is not a finite 0-60 s are refused with a clear error."""
    if isinstance(request_, msg.Heartbeat):
        await world.register_bob()
    error = await refused("bad-input", world.call("bob", world.master, request_))
    assert "capacity" in error.reason or "wait" in error.reason
    assert world.master_node.state.friends.get("bob/pc") is None or world.master_node.state.friends["bob/pc"].capacity == 1


def test_a_status_page_at_every_bound_fits_the_frame_limit():
    """With every name, profile and list at its bound, one status page still encodes within the 1 MiB frame limit."""
    from frender import codec

    per_friends, per_jobs, per_balances = msg.STATUS_PAGE
    longest = RenderProfile(
        blender_version="5" * 256, build_hash="h" * 256, device="d" * 256, cpu_class="c" * 256,
        engine="e" * 256, gl_backend="b" * 256, gl_renderer="r" * 256, gl_version="v" * 256,
    )  # fmt: skip
    friend = "u" * 64 + "/" + "n" * 256
    page = msg.StatusReply(
        friends=tuple(msg.FriendStatus(friend=friend, live=True, busy=False, job=2**31 - 1, profile=longest, clean_run=2**31 - 1) for _ in range(per_friends)),
        jobs=tuple(
            msg.JobStatus(
                job=2**31 - 1, submitter="u" * 64, frames=10_000, friends=(friend,) * msg.JOB_FRIENDS_SHOWN, evicted=(friend,) * msg.JOB_FRIENDS_SHOWN,
                escrow=2**40, paid=2**40, closed=False, friend_count=10**6, evicted_count=10**6,
            )
            for _ in range(per_jobs)
        ),
        balances={f"{i:04d}" + "u" * 60: 2**40 for i in range(per_balances)},
        granted=2**50,
        total_balance=2**50,
    )
    assert len(codec.pack(page)) < Limits().max_frame
