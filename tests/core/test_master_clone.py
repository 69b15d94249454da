"""The master's clone, the draft a shell decides on: equal in every field and sharing nothing mutable, whatever happened."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import note, settings
from hypothesis.stateful import invariant, rule
from test_master_stateful import MasterMachine

from frender.core.master import Master, _ProfileQueue, evolve


def every_field(value: Any) -> Any:
    """``value`` as plain data, with what equality leaves out: soft state, order of dicts and queues."""
    if isinstance(value, _ProfileQueue):
        return ("queue", list(value.fresh), list(value.used))
    if attrs.has(type(value)):
        return (type(value).__name__, [(a.name, every_field(getattr(value, a.name))) for a in attrs.fields(type(value))])
    if isinstance(value, dict):
        return [(key, every_field(item)) for key, item in value.items()]
    if isinstance(value, (list, tuple)):
        return [every_field(item) for item in value]
    return value


def mutable_parts(value: Any, found: dict[int, object] | None = None) -> dict[int, object]:
    """Every mutable object reachable from ``value`` (containers, records, queues), by id."""
    found = {} if found is None else found
    if id(value) in found:
        return found
    if isinstance(value, _ProfileQueue):
        found[id(value)] = value
        mutable_parts(value.fresh, found)
        mutable_parts(value.used, found)
    elif type(value).__hash__ is None:
        found[id(value)] = value
        if isinstance(value, dict):
            for item in value.values():
                mutable_parts(item, found)
        elif isinstance(value, list):
            for item in value:
                mutable_parts(item, found)
        elif attrs.has(type(value)):
            for a in attrs.fields(type(value)):
                mutable_parts(getattr(value, a.name), found)
    return found


def assert_a_true_copy(copy: Master, state: Master) -> None:
    assert every_field(copy) == every_field(state)
    shared = mutable_parts(copy).keys() & mutable_parts(state).keys()
    assert not shared, f"the clone shares {len(shared)} mutable objects with the state"
    for queue in copy.queues.values():  # the queues hold the clone's own records
        assert all(copy.friends[rec.friend] is rec for rec in queue.ordered())


class CloneMachine(MasterMachine):
    """The master's model-based run, with a clone taken at any step and fed the same events since."""

    twin: Master | None = None

    def __init__(self) -> None:
        super().__init__()
        self.twin = self.state.clone()

    def apply(self, command) -> list[object]:
        out = super().apply(command)
        if self.twin is not None:
            for event in out:
                evolve(self.twin, event)
        return out

    @rule()
    def clone_again(self):
        note("clone")
        self.twin = self.state.clone()

    @invariant()
    def the_clone_follows_the_state(self):
        assert self.twin is not None
        assert_a_true_copy(self.twin, self.state)


TestClone = CloneMachine.TestCase
TestClone.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_a_clone_of_a_fresh_master_is_a_true_copy() -> None:
    """Even an empty master's clone shares no container with it."""
    state = Master()
    assert_a_true_copy(state.clone(), state)
