"""Frame bodies take turns at the requester: at most ``frame_bodies`` arrive at once, at most ``frame_bodies_per_key``
of one key; a freed turn goes to a check's body first, then to the key served earliest (so a friend already sending
keeps sending and its batch fills), then to the first come."""

from __future__ import annotations

import trio
import trio.testing

from frender.apps import frame_store
from frender.apps.frame_store import Turns


class Puts:
    """Puts that hold their turn until told to leave; ``inside`` lists them in the order they got it."""

    def __init__(self, turns: Turns, nursery: trio.Nursery) -> None:
        self.turns, self.nursery = turns, nursery
        self.inside: list[str] = []
        self.leave: dict[str, trio.Event] = {}

    async def start(self, name: str, key: str, *, first: bool = False) -> None:
        self.leave[name] = trio.Event()

        async def put() -> None:
            async with self.turns.turn(key, **({"first": True} if first else {})):
                self.inside.append(name)
                await self.leave[name].wait()

        self.nursery.start_soon(put)
        await trio.testing.wait_all_tasks_blocked()

    async def done(self, *names: str) -> None:
        for name in names:
            self.leave[name].set()
        await trio.testing.wait_all_tasks_blocked()


async def test_turns_bound_the_bodies_at_once_and_each_keys_share():
    """With 2 turns and 1 per key: a key's second put waits though a turn is free, and another key takes it; none is
    left held at the end."""
    turns = Turns(2, 1)
    async with trio.open_nursery() as nursery:
        puts = Puts(turns, nursery)
        for name, key in (("a1", "a"), ("a2", "a"), ("b", "b"), ("c", "c")):
            await puts.start(name, key)
        assert puts.inside == ["a1", "b"]  # a2 waits for a's turn, c for a free one
        await puts.done("b")
        assert puts.inside == ["a1", "b", "c"]
        await puts.done("a1")
        assert puts.inside == ["a1", "b", "c", "a2"]
        await puts.done("a2", "c")
    assert not turns._keys and not turns._waiting


async def test_a_freed_turn_goes_to_a_key_already_served_before_one_that_came_earlier():
    """Stickiness: a friend already sending keeps its place, so its batch fills; a friend never served waits, though
    it came first, until a turn is free with no served key waiting. (Strictly in order, c would go before a2.)"""
    turns = Turns(2, 1)
    async with trio.open_nursery() as nursery:
        puts = Puts(turns, nursery)
        for name, key in (("a1", "a"), ("b1", "b"), ("c", "c"), ("a2", "a"), ("b2", "b")):
            await puts.start(name, key)
        assert puts.inside == ["a1", "b1"]
        await puts.done("a1")
        assert puts.inside == ["a1", "b1", "a2"]  # not c, which waited longer
        await puts.done("b1")
        assert puts.inside == ["a1", "b1", "a2", "b2"]
        await puts.done("a2")
        assert puts.inside == ["a1", "b1", "a2", "b2", "c"]  # no served key waits: c's turn, and c is served now
        await puts.done("b2", "c")
    assert not turns._keys and not turns._waiting


async def test_a_checks_body_goes_before_frames_and_the_earliest_served_key_before_later_ones():
    """A check's render closes batches (their frames become final once checked): it takes the next turn before any
    frame. Among served keys, the one served first goes first."""
    turns = Turns(2, 2)
    async with trio.open_nursery() as nursery:
        puts = Puts(turns, nursery)
        await puts.start("a1", "a")
        await puts.start("b1", "b")
        await puts.start("b2", "b")
        await puts.start("a2", "a")
        await puts.start("check", "c", first=True)
        assert puts.inside == ["a1", "b1"]
        await puts.done("b1")
        assert puts.inside == ["a1", "b1", "check"]
        await puts.done("check")
        assert puts.inside == ["a1", "b1", "check", "a2"]  # a was served before b
        await puts.done("a1")
        assert puts.inside == ["a1", "b1", "check", "a2", "b2"]
        await puts.done("a2", "b2")
    assert not turns._keys and not turns._waiting


async def test_a_cancelled_wait_leaves_no_turn_behind_and_a_key_keeps_its_place_between_its_puts():
    """A put cancelled while it waits takes no turn. A friend sends as it renders, with gaps: a key that neither holds
    nor waits keeps its place, and comes back before keys first served after it."""
    turns = Turns(1, 1)
    async with trio.open_nursery() as nursery:
        puts = Puts(turns, nursery)
        await puts.start("a1", "a")
        scope = trio.CancelScope()
        nursery.start_soon(_wait_for_turn, turns, "x", scope)
        await trio.testing.wait_all_tasks_blocked()
        assert "x" in turns._keys
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert "x" not in turns._keys and not turns._waiting
        await puts.start("b1", "b")
        await puts.done("a1")  # a neither holds nor waits now
        assert puts.inside == ["a1", "b1"]
        await puts.start("b2", "b")
        await puts.start("a2", "a")
        await puts.done("b1")
        assert puts.inside == ["a1", "b1", "a2"]  # a, served first, goes before b, which waited longer
        await puts.done("a2", "b2")
        assert puts.inside == ["a1", "b1", "a2", "b2"]
    assert not turns._keys and not turns._waiting


async def test_of_more_keys_than_are_kept_the_one_served_least_recently_loses_its_place(monkeypatch):
    monkeypatch.setattr(frame_store, "RANKS_KEPT", 2)
    turns = Turns(1, 1)
    async with trio.open_nursery() as nursery:
        puts = Puts(turns, nursery)
        for name, key in (("a1", "a"), ("b1", "b"), ("c1", "c")):
            await puts.start(name, key)
            await puts.done(name)
        await puts.start("b2", "b")  # holds the turn
        await puts.start("c2", "c")
        await puts.start("a2", "a")
        await puts.done("b2")
        assert puts.inside[-1] == "c2"  # a was forgotten when c was first served: c goes first though a was first once
        await puts.done("c2", "a2")
    assert set(turns._ranks) <= {"a", "b", "c"} and len(turns._ranks) == 2


async def _wait_for_turn(turns: Turns, key: str, scope: trio.CancelScope) -> None:
    with scope:
        async with turns.turn(key):
            raise AssertionError("never given a turn: a1 holds the only one")
