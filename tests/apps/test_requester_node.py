"""The requester node's own timing rules, on a real master and requester (the modelled backend)."""

from __future__ import annotations

import trio

from frender.apps import messages as msg
from frender.apps.requester import RequesterSettings
from frender.core import job as core
from test_security import World


async def test_a_new_jobs_friends_are_not_silent_before_they_could_ask(tmp_path, nursery):
    """Silence counts from when a friend joined the job, not from when the requester started."""
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
