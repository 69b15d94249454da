"""One shell for every node that keeps a log: decide on a draft, commit once, evolve, then react.

The master and the requester are both a ``Node`` over their own core; they add
only their messages, their core's ``evolve`` and their reactions. The contract
(docs/architecture.md, "Inside a process"):

Rule 1. ``state`` is the log's fold: only a commit evolves it, and only with
        events its log holds (or soft ones, which no log holds).
Rule 2. Commands are decided on ``_draft``: one ``clone()`` of ``state`` taken at
        start-up and kept level with it. Each decided event is evolved into the
        draft at once and into ``state`` after its commit, in the same order, so
        the two agree whenever nothing is pending and no commit copies anything.
Rule 3. A call's steps decide in turn on the draft, each seeing the events of
        those before it, other calls' pending ones included. A step refused
        (``Rejected``, answered as ``Refused``) withdraws every event of its
        call: the draft is cloned again from ``state`` and the rest replayed.
Rule 4. Group commit: ``commit`` yields once so that the other ready calls
        decide, then the first to run appends everything pending in one
        transaction (one fsync). Every answer, a refusal included, waits for it.
Rule 5. A batch with no durable event, decided while nothing is pending,
        evolves the draft and ``state`` at once: there is nothing to commit.
Rule 6. A failed append (``LogFailed``) stops the node: nothing is decided or
        answered after, and ``state`` still equals the log, which a restart
        replays.

Deciding never awaits and trio runs every handler on one thread, so each
decision is atomic and the state has one owner without a dedicated task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, Self, TypeVar

import trio

from frender.core._decider import Rejected, is_durable
from frender.store import LogFailed, SqliteLog, replay
from frender.transports import Refused

__all__ = ["Clonable", "LogFailed", "Node", "Step"]

log = logging.getLogger("frender.node")


class Clonable(Protocol):
    def clone(self) -> Self: ...


S = TypeVar("S", bound=Clonable)
Step = Callable[[S], Sequence[object]]  # decides on the draft: the events it decided


class Node(Generic[S]):
    """A core's state, its draft and its log: the one decide-commit-evolve loop (see the module's rules)."""

    def __init__(self, log: SqliteLog, state: S, evolve: Callable[[S, object], object]) -> None:
        """Fold ``log`` into ``state`` (verifying its chain), then take the draft; ``evolve`` is the core's (it evolves
        the state in place: what it returns is not used)."""
        self.log = log
        self.state = state  # committed: the log's fold (Rule 1)
        self._evolve = evolve
        replay(log, self._fold)
        self._draft = state.clone()  # Rule 2
        self._pending: list[object] = []  # evolved into the draft, not yet into ``state``, in order
        self.broken: BaseException | None = None  # why the log failed: nothing is decided or answered after
        self._log_failed = trio.Event()

    # ------------------------------------------------------------ hooks

    def _fold(self, event: object) -> None:
        """Evolve ``state`` with a committed (or replayed) event; a node adds what its shell keeps of it."""
        self._evolve(self.state, event)

    def _committed(self, batch: list[object]) -> None:
        """After a commit has evolved ``state``: wake what waits on it (a node's own reactions)."""

    # ------------------------------------------------------------ the loop

    def decide(self, *steps: Step[S]) -> list[object]:
        """Decide each step on the draft and evolve the draft (Rules 2, 3, 5); the events wait for ``commit``."""
        if self.broken is not None:
            raise LogFailed(f"the event log failed: {self.broken}")
        mark = len(self._pending)
        decided: list[object] = []
        try:
            for step in steps:
                events = step(self._draft)
                for event in events:
                    self._evolve(self._draft, event)
                decided.extend(events)
                self._pending.extend(events)
        except BaseException as exc:
            if len(self._pending) > mark:  # withdraw the call: the draft again is ``state`` plus the rest
                del self._pending[mark:]
                self._draft = self.state.clone()
                for event in self._pending:
                    self._evolve(self._draft, event)
            if isinstance(exc, Rejected):
                raise Refused(exc.code, exc.reason) from None
            raise
        if not mark and not any(is_durable(event) for event in decided):  # Rule 5
            del self._pending[:]
            for event in decided:
                self._fold(event)
            if decided:
                self._committed(decided)
        return decided

    def took(self, decided: Sequence[object]) -> None:
        """Record soft events decided on the committed ``state`` (a call answered on the spot): Rule 5, or queued."""
        if any(is_durable(event) for event in decided):
            raise ValueError("only soft events are decided outside the draft")
        for event in decided:
            self._evolve(self._draft, event)
        if self._pending:
            self._pending.extend(decided)
            return
        for event in decided:
            self._fold(event)
        if decided:
            self._committed(list(decided))

    async def commit(self) -> None:
        """Return once every event decided so far is committed, with those of the other ready calls (Rule 4)."""
        if self._pending:
            await trio.lowlevel.cancel_shielded_checkpoint()  # let the other ready calls decide first
        if self.broken is not None:
            raise LogFailed(f"the event log failed: {self.broken}")
        if self._pending:
            self.commit_now()

    def commit_now(self) -> None:
        """Append the pending durable events in one transaction, then evolve ``state`` with every pending one, in order."""
        batch, self._pending = self._pending, []
        durable = [event for event in batch if is_durable(event)]
        if durable:
            try:
                self.log.append(durable)
            except BaseException as exc:  # Rule 6
                self.broken = exc
                self._log_failed.set()
                log.critical("the event log refused an append (%s): stopping; a restart replays the log", exc)
                raise LogFailed(f"the event log failed: {exc}") from exc
        for event in batch:
            self._fold(event)
        self._committed(batch)

    async def stop_on_log_failure(self) -> None:
        """Raise LogFailed once an append has failed, ending the process (run it in the process's nursery)."""
        await self._log_failed.wait()
        raise LogFailed(f"the event log failed: {self.broken}") from self.broken
