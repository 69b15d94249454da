"""Who may do what: the master and requester refuse strangers, impostors and spenders of others' points.

The real master and requester nodes serve on 127.0.0.1 over the real
transports; the requester renders with the modelled backend (no Blender needed
to check permissions).
"""

from __future__ import annotations

import functools
import time

import pytest
import trio

from frender.apps import messages as msg
from frender.apps.master import MasterNode
from frender.apps.requester import RequesterNode, RequesterSettings
from frender.blender import ModelledBackend, modelled_frame
from frender.core import master as core
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


class World:
    """A master and a requester on 127.0.0.1, and a few people with keys."""

    def __init__(self, tmp_path, settings: RequesterSettings = RequesterSettings(), *, clock=time.time, requester_log=SqliteLog) -> None:
        self.tmp = tmp_path
        self.settings = settings
        self.clock = clock  # both nodes' wall clock (a test under trio's MockClock passes one that follows it)
        self.requester_log = requester_log
        self.people = {name: Identity.load_or_create(tmp_path / name) for name in ("alice", "bob", "mallory")}

    async def start(self, nursery: trio.Nursery) -> None:
        master_id = Identity.load_or_create(self.tmp / "master")
        self.master_node = MasterNode(master_id, SqliteLog(self.tmp / "master.db"), core.MasterSettings(friend_timeout=60), clock=self.clock)
        port = await nursery.start(functools.partial(serve, master_id, "127.0.0.1", 0, self.master_node, limits=LIMITS))
        self.master = Address(host="127.0.0.1", port=port, fingerprint=master_id.fingerprint)
        requester_id = Identity.load_or_create(self.tmp / "requester")
        self.master_node.apply(core.TrustRequester(key=requester_id.fingerprint, name="requester"))
        self.master_node.apply(core.GrantPoints(user="alice", amount=100))
        node = RequesterNode(
            identity=requester_id,
            home=self.tmp / "requester",
            log=self.requester_log(self.tmp / "requester.db"),
            master=self.master,
            address=Address(host="127.0.0.1", port=1, fingerprint=requester_id.fingerprint),
            backend=BACKEND,
            settings=self.settings,
            limits=LIMITS,
            clock=self.clock,
        )
        port = await nursery.start(functools.partial(serve, requester_id, "127.0.0.1", 0, node, limits=LIMITS))
        node.address = self.requester = Address(host="127.0.0.1", port=port, fingerprint=requester_id.fingerprint)
        self.requester_node = node

    async def call(self, who: str, where: Address, request: object) -> object:
        async with connect(where, self.people[who], limits=LIMITS) as session:
            return await session.call(request)

    async def register_bob(self) -> None:
        await self.call("bob", self.master, msg.RegisterFriend(user="bob", name="pc", profile=await BACKEND.probe()))

    async def alice_submits(self) -> msg.Submitted:
        blend = self.tmp / "job.blend"
        blend.write_bytes(b"modelled scene")
        header = await file_header(blend, kind="upload", job="upload")
        upload = FileHeader(kind="upload", job=header.sha256, size=header.size, sha256=header.sha256)
        await put_file(self.requester, self.people["alice"], upload, blend, limits=LIMITS)
        self.blend_sha256 = header.sha256
        return await self.call("alice", self.requester, msg.Submit(user="alice", blend_sha256=header.sha256, friends=1))


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
