"""Calls the master and requester may hold: a friend's heartbeat waits for a job, a client's
progress for more final frames, so neither polls and nothing waits for a poll interval."""

from __future__ import annotations

import trio

from frender.apps import messages as msg
from test_security import world  # noqa: F401  (the fixture: a real master and requester on 127.0.0.1)


async def test_an_idle_friends_heartbeat_returns_its_assignment_as_soon_as_it_is_granted(world):  # noqa: F811
    await world.register_bob()
    got: list[msg.HeartbeatReply] = []

    async def beat() -> None:
        got.append(await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc", wait=30.0)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat)
        await trio.sleep(0.2)
        assert not got  # held: nothing to say yet
        job = (await world.alice_submits()).job
    (reply,) = got
    assert reply.assignment is not None and reply.assignment.assignment.job == job


async def test_a_held_heartbeat_with_nothing_to_give_returns_empty(world):  # noqa: F811
    await world.register_bob()
    reply = await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc", wait=0.05))
    assert reply.assignment is None


async def test_progress_is_held_until_more_frames_are_final(world):  # noqa: F811
    await world.register_bob()
    job = (await world.alice_submits()).job
    now = await world.call("alice", world.requester, msg.Progress(job=job))
    assert now.final == () and not now.finished
    with trio.move_on_after(0.2) as held:
        await world.call("alice", world.requester, msg.Progress(job=job, final_known=0, delivered_known=0))
    assert held.cancelled_caught  # nothing delivered, nothing final: the call waits
    told = await world.call("alice", world.requester, msg.Progress(job=job, final_known=0, delivered_known=5))
    assert told.delivered == 0  # the caller's count is not the requester's: answered at once
