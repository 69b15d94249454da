"""A friend's standing at the master, for ``frender friend status``: its trust, and the points it earned and cost.

- The running friend notes in its home which master it serves and under which
  name (``HOME/master``), so ``frender friend status --home H`` asks that master
  with no more options.
- The master folds, per friend, what its log says it was paid, fined and
  evicted for (``Tally``: from ``friend_paid.v1``, ``friend_fined.v1`` and
  ``friend_evicted.v1``; rebuilt from the log on start-up, never logged itself)
  and answers ``FriendStanding`` to the friend's owner or the operator
  (``standing_of``), reading its records and changing nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from attrs import Factory, define

from frender.apps import messages as msg
from frender.apps import words
from frender.core import master as core
from frender.transports import Address, Refused

__all__ = ["NOTE", "Tally", "noted", "note", "standing_lines", "standing_of", "standing_report"]

NOTE = "master"  # HOME/master: the master's address, then the friend's full name


def note(home: Path, master: Address, friend: str) -> None:
    """What ``frender friend status`` asks for: this friend's master and name (written whole, then renamed)."""
    partial = home / f".{NOTE}.partial"
    partial.write_text(f"{master}\n{friend}\n")
    partial.replace(home / NOTE)


def noted(home: Path) -> tuple[Address, str] | None:
    """The master and name a friend run in ``home`` noted; None when none ran there (or the note is damaged)."""
    try:
        address, friend = (home / NOTE).read_text().split()
        return Address.parse(address), friend
    except (OSError, ValueError):
        return None


@define
class Tally:
    """Per friend, from the master's log: points paid for it, jobs that paid it, fines its owner paid, evictions."""

    earned: Counter[str] = Factory(Counter)
    jobs_paid: Counter[str] = Factory(Counter)
    fined: Counter[str] = Factory(Counter)
    evictions: Counter[str] = Factory(Counter)

    def fold(self, event: object) -> None:
        if type(event) not in _TALLIED:  # most events (heartbeats above all) touch no tally: one set lookup
            return
        match event:
            case core.FriendPaid(friend=friend, points=points):
                self.earned[friend] += points
                self.jobs_paid[friend] += 1
            case core.FriendFined(friend=friend, points=points):
                self.fined[friend] += points
            case core.FriendEvicted(friend=friend):
                self.evictions[friend] += 1


_TALLIED = frozenset({core.FriendPaid, core.FriendFined, core.FriendEvicted})


def standing_of(state: core.Master, tally: Tally, friend: str, *, key: str, operator: bool, now: float) -> msg.Standing:
    """``friend``'s standing, for its owner's key or the operator; anyone else is refused ("not-yours")."""
    rec = state.friends.get(friend)
    account = state.accounts.get(rec.user) if rec is not None else None
    if rec is None or (not operator and (account is None or account.key != key)):
        raise Refused("not-yours", f"{friend} is no friend of your key's account here")
    return msg.Standing(
        friend=friend,
        user=rec.user,
        reputation=rec.reputation,
        trust_threshold=state.settings.trust_threshold,
        clean_run=rec.clean_run,
        earned=tally.earned[friend],
        jobs_paid=tally.jobs_paid[friend],
        fined=tally.fined[friend],
        evictions=tally.evictions[friend],
        balance=account.balance if account is not None else 0,
        job=rec.job,
        live=core.is_live(state, friend, now),
        held=sum(h.points for h in account.holds if h.friend == friend) if account is not None else 0,
        trusted=core.is_trusted(state, rec),
        trust_jobs=rec.trust_jobs,
        trust_jobs_needed=state.settings.trust_jobs,
        requesters=len(rec.requesters),
        requesters_needed=state.settings.trust_requesters,
    )


def standing_lines(s: msg.Standing) -> list[str]:
    """The standing for people, a line each: trust and how far from trusted, points, what is held now."""
    if s.trusted or (not s.trust_jobs_needed and s.reputation >= s.trust_threshold):  # (an older master: reputation alone)
        trust = f"standing: {words.standing(s.reputation, s.trust_threshold)}: trusted (a failed check of the requesters' own drops it to 0)"
    else:
        needs = []
        if (left := s.trust_threshold - s.reputation) > 0:
            needs.append(f"{left} more of the requesters' own checks passed in a row")
        if (jobs_left := s.trust_jobs_needed - s.trust_jobs) > 0:
            needs.append(f"passes in {jobs_left} more job" + ("" if jobs_left == 1 else "s"))
        if (requesters_left := s.requesters_needed - s.requesters) > 0:
            needs.append(f"{requesters_left} more requester" + ("" if requesters_left == 1 else "s") + " checking it")
        trust = f"standing: probation {s.reputation}/{s.trust_threshold}: " + (
            "; ".join(needs) + " make it trusted (a failed check starts again from 0)"
            if needs
            else "its trust lapsed (no pass of the requesters' own checks for long): the next pass makes it trusted again"
        )
    jobs = f"{s.jobs_paid} job" + ("" if s.jobs_paid == 1 else "s")
    points = f"points: {s.earned} earned in {jobs}; fined {s.fined}"
    if s.evictions:
        points += f" (caught forging in {s.evictions} job" + ("" if s.evictions == 1 else "s") + ")"
    held = f", {s.held} of them held until a later job's checks confirm them (forfeited if it is caught)" if s.held else ""
    lines = [trust, points + f"; {s.user}'s balance {s.balance}" + held]
    if s.job is not None:
        lines.append(f"held: its points in job {s.job} are paid when that job closes (forfeited if it is caught forging)")
    return lines


def standing_report(home: Path, *, deadline: float = 10.0) -> list[str]:
    """What ``frender friend status`` adds: how the friend run in ``home`` stands, asked of its master with the
    friend's key; a master that refuses or does not answer is said in a line, not raised. No note: nothing."""
    import trio

    from frender.transports import Identity, RemoteError, TransportError, connect

    found = noted(home)
    if found is None:
        return []
    master, friend = found

    async def ask() -> msg.Standing:
        with trio.fail_after(deadline):
            async with connect(master, Identity.load_or_create(home)) as session:
                return await msg.ask(session, msg.FriendStanding(friend=friend))

    try:
        reply = trio.run(ask)
    except RemoteError as exc:
        return [f"{friend}: the master refused to say how it stands: {exc.reason} ({exc.code})"]
    except (TransportError, OSError, trio.TooSlowError) as exc:
        return [f"{friend}: the master at {master.host}:{master.port} does not answer ({exc or type(exc).__name__}); its standing is not known now"]
    lines = standing_lines(reply)
    return [f"{friend} {lines[0]}", *lines[1:]]
