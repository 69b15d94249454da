"""What every decider in the core shares.

A decider is two pure functions over one aggregate's state:

    decide(state, command) -> list[event]   # or raise Rejected; state untouched
    evolve(state, event)   -> state         # total on any logged event

Everything non-deterministic (now, fresh ids, random draws) arrives inside the
command and is copied into the events, so folding a log reproduces the state.
Events whose class says ``durable = False`` (heartbeat liveness) are evolved
but never stored: they are soft state that must not survive a restart.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

__all__ = ["Rejected", "is_durable", "fold"]

S = TypeVar("S")


class Rejected(Exception):
    """A command the domain refuses, with a stable ``code`` and a reason for people.

    A rejection is a clean answer to a peer or operator (untrusted requester,
    balance too low, ...), never a crash: the state is left unchanged.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def is_durable(event: object) -> bool:
    return getattr(type(event), "durable", True)


def fold(evolve: Callable[[S, Any], S], state: S, events: Iterable[object]) -> S:
    """Apply ``events`` in order; the replay of a log is ``fold(evolve, initial, log)``."""
    for event in events:
        state = evolve(state, event)
    return state
