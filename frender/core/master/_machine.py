"""One ``decide`` and one ``evolve`` for the master, over its registry, ledger, assignment and reports.

Invariants: ``decide`` never changes the state it is given: it plays the
command's events on a ``Draft`` (copies of the records they touch) through
the same evolvers as ``evolve``, so a later rule of the decision reads what the
earlier events left and a transition the tables refuse is a ``Rejected``
before anything is logged; ``evolve`` applies a logged event in place, each
module's evolver changing its own part, in a fixed order (registry, ledger,
assignment, reports). A command's ``now`` is a finite number (``bad-time``):
a hold that expires at NaN would never expire.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from frender.core._decider import Rejected
from frender.core.master import _assignment, _ledger, _registry, _reports
from frender.core.master._master import Draft, Master
from frender.core.master.commands import (
    CreateAccount,
    GrantPoints,
    Heartbeat,
    RegisterFriend,
    ReportJob,
    RequestFriends,
    TrustRequester,
)
from frender.core.master.events import EVENTS

__all__ = ["decide", "evolve"]


# Per event, the evolvers of the modules it touches, in a fixed order.
_PLAN: dict[type, tuple[Callable[[Master, Any], None], ...]] = {
    event: tuple(m[event] for m in (_registry.EVOLVERS, _ledger.EVOLVERS, _assignment.EVOLVERS, _reports.EVOLVERS) if event in m)
    for event in EVENTS
}


def evolve(state: Master, event: object) -> Master:
    """Apply one event (in place: one task owns the state) and return the state."""
    for evolver in _PLAN[type(event)]:
        evolver(state, event)
    return state


_DECIDERS: dict[type, Callable[[Draft, Any], None]] = {
    CreateAccount: _ledger.create_account,
    RegisterFriend: _registry.register_friend,
    Heartbeat: _registry.heartbeat,
    TrustRequester: _registry.trust,
    GrantPoints: _ledger.grant,
    RequestFriends: _assignment.request_friends,
    ReportJob: _reports.report,
}


def decide(state: Master, command: object) -> list[object]:
    """The events that ``command`` causes, or Rejected; ``state`` is not changed."""
    handler = _DECIDERS.get(type(command))
    if handler is None:
        raise TypeError(f"the master has no decision for {type(command).__name__}")
    now = getattr(command, "now", 0.0)
    if not (isinstance(now, (int, float)) and math.isfinite(now)):
        raise Rejected("bad-time", "now is a finite number of seconds")
    draft = Draft(state, evolve)
    handler(draft, command)
    return draft.events
