"""The master's shell: heartbeats answered at once, and every answer still after its commit."""

from __future__ import annotations

import pytest
import trio

from frender.apps import messages as msg
from frender.apps.master import MasterNode
from frender.core import master as core
from frender.core.profile import RenderProfile
from frender.store import LogFailed, MemoryLog
from frender.transports import Address, Identity, Peer, Refused

PROFILE = RenderProfile(blender_version="5.0.1", build_hash="test")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def farm(tmp_path):
    """A master with one registered friend (bob/pc), a trusted requester and a funded submitter."""
    log = MemoryLog()
    clock = Clock()
    node = MasterNode(Identity.load_or_create(tmp_path / "master"), log, core.MasterSettings(friend_timeout=60), clock=clock)
    bob = Peer(fingerprint="sha256:" + "b" * 64, public_key=b"b" * 32, host="127.0.0.1")
    requester = Peer(fingerprint="sha256:" + "e" * 64, public_key=b"e" * 32, host="127.0.0.1")
    node.apply(core.TrustRequester(key=requester.fingerprint, name="requester"))
    node.apply(core.CreateAccount(user="alice", key="sha256:" + "a" * 64))
    node.apply(core.CreateAccount(user="bob", key=bob.fingerprint))
    node.apply(core.CreateAccount(user="carol", key="sha256:" + "c" * 64))
    node.apply(core.GrantPoints(user="alice", key="sha256:" + "a" * 64, amount=100))
    return node, log, clock, bob, requester


async def _register(node: MasterNode, bob: Peer) -> None:
    await node.call(bob, msg.RegisterFriend(user="bob", name="pc", profile=PROFILE))


async def _ask(node: MasterNode, requester: Peer, want: int = 1) -> msg.FriendsGranted:
    ask = msg.AskFriends(
        submitter="alice", submitter_key="sha256:" + "a" * 64, frames=4, want=want, profile=PROFILE,
        blend_sha256="0" * 64, address=str(Address("127.0.0.1", 1, requester.fingerprint)),
    )
    granted = await node.call(requester, ask)
    assert isinstance(granted, msg.FriendsGranted)
    return granted


async def _assign(node: MasterNode, requester: Peer, want: int = 1) -> int:
    granted = await _ask(node, requester, want)
    assert len(granted.friends) == want
    return granted.job


async def test_a_heartbeat_is_answered_at_once_when_nothing_waits_to_commit(farm) -> None:
    """With nothing pending the reply is given on the spot; liveness moves, the log does not."""
    node, log, clock, bob, _ = farm
    await _register(node, bob)
    rows = len(log.rows)
    clock.now += 5
    assert node.call_at_once(bob, msg.Heartbeat(friend="bob/pc")) == msg.HeartbeatReply()
    assert node.state.seen["bob/pc"] == (clock.now, False)
    assert len(log.rows) == rows


async def test_an_uncommitted_event_about_the_friend_holds_its_heartbeat_back(farm) -> None:
    """An answer must not reveal an uncommitted change to the friend, its owner's key or its job; others go on."""
    node, _, clock, bob, requester = farm
    await _register(node, bob)
    node._apply_later(core.GrantPoints(user="carol", key="sha256:" + "c" * 64, amount=1))  # nothing a heartbeat reads
    clock.now += 1
    assert node.call_at_once(bob, msg.Heartbeat(friend="bob/pc")) == msg.HeartbeatReply()
    node._apply_later(
        core.RegisterFriend(user="bob", key=bob.fingerprint, friend="bob/pc", profile=RenderProfile(blender_version="4.2", build_hash="x"), now=clock.now)
    )
    seen = node.state.seen["bob/pc"]
    clock.now += 1
    assert node.call_at_once(bob, msg.Heartbeat(friend="bob/pc")) is None
    assert node.state.seen["bob/pc"] == seen  # declined: nothing evolved
    await node._commit()
    assert node.call_at_once(bob, msg.Heartbeat(friend="bob/pc")) == msg.HeartbeatReply()


async def test_a_heartbeat_that_releases_a_job_is_answered_after_its_commit(farm) -> None:
    """A release is durable: call_at_once leaves it to call, which answers once the release is logged."""
    node, log, clock, bob, requester = farm
    await _register(node, bob)
    job = await _assign(node, requester)
    held = node.call_at_once(bob, msg.Heartbeat(friend="bob/pc"))
    assert held.assignment is not None and held.assignment.assignment.job == job
    done = msg.Heartbeat(friend="bob/pc", last_done=job)
    assert node.call_at_once(bob, done) is None
    assert node.state.friends["bob/pc"].job == job  # untouched: decided, not evolved
    assert await node.call(bob, done) == msg.HeartbeatReply()
    assert log.rows[-1].tag == core.FriendReleased.tag
    assert node.state.friends["bob/pc"].job is None


async def test_a_refused_heartbeat_is_refused_at_once(farm) -> None:
    """An unknown friend or another user's key is refused on the spot, as call would."""
    node, _, _, bob, requester = farm
    await _register(node, bob)
    with pytest.raises(Refused) as unknown:
        node.call_at_once(bob, msg.Heartbeat(friend="bob/laptop"))
    assert unknown.value.code == "unknown-friend"
    with pytest.raises(Refused) as stranger:
        node.call_at_once(requester, msg.Heartbeat(friend="bob/pc"))
    assert stranger.value.code == "wrong-key"


async def test_other_requests_are_left_to_call(farm) -> None:
    """Only heartbeats are answered at once."""
    node, _, _, bob, _ = farm
    assert node.call_at_once(bob, msg.RegisterFriend(user="bob", name="pc", profile=PROFILE)) is None
    assert node.call_at_once(bob, msg.Status()) is None
    assert "bob/pc" not in node.state.friends


async def test_an_uncommitted_close_holds_back_the_heartbeats_of_the_jobs_friends(farm) -> None:
    """Closing a job frees its friends: until the close is committed, their heartbeats wait for call."""
    node, _, _, bob, requester = farm
    await _register(node, bob)
    job = await _assign(node, requester)
    node._apply_later(core.ReportJob(requester=requester.fingerprint, job=job, close=True, now=1000.0))
    assert node.call_at_once(bob, msg.Heartbeat(friend="bob/pc")) is None
    await node._commit()
    assert node.call_at_once(bob, msg.Heartbeat(friend="bob/pc")) == msg.HeartbeatReply()


async def test_a_failed_append_stops_the_master_and_it_answers_nobody_after(farm) -> None:
    """A commit that fails ends the master (stop_on_log_failure raises) and no call is answered after it,
    not even a heartbeat that changes soft state only."""
    node, log, clock, bob, requester = farm
    await _register(node, bob)

    def broken_append(events):
        raise OSError("disk I/O error")

    log.append = broken_append
    with pytest.raises(LogFailed):
        await _assign(node, requester)
    with pytest.raises(LogFailed):
        await node.stop_on_log_failure()
    assert node.call_at_once(bob, msg.Heartbeat(friend="bob/pc")) is None  # not on the spot: left to call, which refuses
    with pytest.raises(LogFailed):
        await node.call(bob, msg.Heartbeat(friend="bob/pc"))


def _queues(state: core.Master) -> dict:
    return {key: [rec.friend for rec in queue.ordered()] for key, queue in state.queues.items()}


def _level(draft: core.Master, state: core.Master) -> bool:
    """The two states agree in every field, soft state and the order of the queues included."""
    soft = [(r.friend, r.away, r.refuses) for r in state.friends.values()]
    return (
        draft == state
        and draft.seen == state.seen
        and draft.owners == state.owners
        and [(r.friend, r.away, r.refuses) for r in draft.friends.values()] == soft
        and _queues(draft) == _queues(state)
    )


async def test_a_failed_group_commit_answers_no_peer_and_leaves_the_state_equal_to_the_log(farm) -> None:
    """When a batch's append fails, no call of it is answered, a heartbeat answered meanwhile read only committed
    state, and the master's state equals its log's fold: a restart from the log loses nothing anyone was told."""
    node, log, clock, bob, requester = farm
    dave = Peer(fingerprint="sha256:" + "d" * 64, public_key=b"d" * 32, host="127.0.0.1")
    node.apply(core.CreateAccount(user="dave", key=dave.fingerprint))
    await _register(node, bob)
    await node.call(dave, msg.RegisterFriend(user="dave", name="pc", profile=PROFILE))
    committed = list(log.rows)

    def broken_append(events):
        raise OSError("disk I/O error")

    log.append = broken_append
    clock.now += 1
    node._apply_later(
        core.RequestFriends(
            requester=requester.fingerprint, submitter="alice", submitter_key="sha256:" + "a" * 64, frames=4, want=1,
            profile=PROFILE, blend_sha256="0" * 64, now=clock.now,
        )
    )
    [granted] = [f for f, rec in node._draft.friends.items() if rec.job is not None]  # decided on the draft, not committed
    other, other_peer = ("dave/pc", dave) if granted == "bob/pc" else ("bob/pc", bob)
    granted_peer = bob if granted == "bob/pc" else dave
    assert node.call_at_once(granted_peer, msg.Heartbeat(friend=granted)) is None  # its answer would tell the grant
    assert node.call_at_once(other_peer, msg.Heartbeat(friend=other)) == msg.HeartbeatReply()  # committed state only
    outcomes: list[object] = []

    async def call(peer: Peer, request: object) -> None:
        try:
            outcomes.append(await node.call(peer, request))
        except LogFailed as exc:
            outcomes.append(exc)

    ask = msg.AskFriends(
        submitter="alice", submitter_key="sha256:" + "a" * 64, frames=4, want=1, profile=PROFILE,
        blend_sha256="0" * 64, address=str(Address("127.0.0.1", 1, requester.fingerprint)),
    )
    async with trio.open_nursery() as nursery:  # calls ready at the same moment: one batch with the grant above
        nursery.start_soon(call, requester, ask)
        nursery.start_soon(call, bob, msg.RegisterFriend(user="bob", name="laptop", profile=PROFILE))
        nursery.start_soon(call, granted_peer, msg.Heartbeat(friend=granted))
    assert len(outcomes) == 3 and all(isinstance(outcome, LogFailed) for outcome in outcomes)  # nobody was answered
    assert log.rows == committed
    assert node.state.jobs == {} and "bob/laptop" not in node.state.friends
    assert all(rec.job is None for rec in node.state.friends.values())
    reborn = MasterNode(node.identity, log, core.MasterSettings(friend_timeout=60), clock=clock)
    assert node.state == reborn.state and _queues(node.state) == _queues(reborn.state)  # memory never ran ahead of the log


async def test_the_draft_and_the_state_are_level_whenever_nothing_is_pending(farm) -> None:
    """Events reach the committed state after their commit in the draft's order, soft ones too, so with nothing
    pending the draft and the state agree in every field, liveness and the assignment order included."""
    node, log, clock, bob, requester = farm
    dave = Peer(fingerprint="sha256:" + "d" * 64, public_key=b"d" * 32, host="127.0.0.1")
    node.apply(core.CreateAccount(user="dave", key=dave.fingerprint))
    await _register(node, bob)
    await node.call(dave, msg.RegisterFriend(user="dave", name="pc", profile=PROFILE))
    assert _level(node._draft, node.state)
    job = await _assign(node, requester, want=2)
    clock.now += 1
    node._apply_later(core.Heartbeat(friend="dave/pc", key=dave.fingerprint, last_done=job, now=clock.now))  # a release: pending
    clock.now += 1
    assert node.call_at_once(dave, msg.Heartbeat(friend="dave/pc")) is None  # touched: left to call
    node._apply_later(core.Heartbeat(friend="dave/pc", key=dave.fingerprint, away="paused", now=clock.now))  # soft, queued behind
    assert node.call_at_once(bob, msg.Heartbeat(friend="bob/pc")).assignment is not None  # untouched: answered from the state
    assert node.state.friends["dave/pc"].job == job  # the release is not committed yet
    await node._commit()
    assert node.state.friends["dave/pc"].job is None and node.state.seen["dave/pc"] == (clock.now, False)
    assert node.state.friends["dave/pc"].away == "paused"
    assert _level(node._draft, node.state)
    async with trio.open_nursery() as nursery:  # a batch: bob reports the job done, dave comes back, bob adds a machine
        nursery.start_soon(node.call, bob, msg.Heartbeat(friend="bob/pc", last_done=job))
        nursery.start_soon(node.call, dave, msg.Heartbeat(friend="dave/pc", refuse=("carol",)))
        nursery.start_soon(node.call, bob, msg.RegisterFriend(user="bob", name="laptop", profile=PROFILE))
    await _assign(node, requester, want=1)
    assert [row.tag for row in log.rows].count(core.FriendReleased.tag) == 2
    assert _level(node._draft, node.state) and not node._pending


async def test_a_grant_carries_the_friends_standing(farm) -> None:
    """A granted friend comes with the master's reputation and clean run, so the requester checks it as what it is."""
    node, _log, _clock, bob, requester = farm
    await _register(node, bob)
    for state in (node.state, node._draft):  # bob earned both in earlier jobs
        core.evolve(state, core.CheckRunUpdated(friend="bob/pc", run=12))
        core.evolve(state, core.ReputationChanged(friend="bob/pc", job=0, reputation=2, passed=2, failed=0))
    granted = await _ask(node, requester)
    assert [(f.friend, f.reputation, f.clean_run) for f in granted.friends] == [("bob/pc", 2, 12)]
