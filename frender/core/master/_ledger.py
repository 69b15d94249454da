"""The ledger: accounts bound to keys, grants, escrow, payouts and fines.

Invariants: an account is bound once, by its owner's key, and a key holds one
account (Rule 1); points enter only by grants to a bound account's key;
sum(balances) + sum(open escrow) == points ever granted after every event
(Rule 5, held points counted with the balances); a report never pays beyond
the job's escrow, and a fine is capped at the payer's balance, so no balance
goes below 0 (Rule 9); a friend's pay is held until a later job's own checks
confirm it or the hold runs out, and a caught owner's holds go back to the
submitters that paid them (Rule 12). Balances read during
a decision are the draft's (``Draft.account``): what the events emitted so far
left, never a sum kept by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from frender.core._decider import Rejected
from frender.core.master._master import Account, Draft, Hold, JobRecord, Master
from frender.core.master.commands import CreateAccount, GrantPoints
from frender.core.master.events import (
    EscrowFunded,
    FriendFined,
    FriendPaid,
    HoldForfeited,
    HoldReleased,
    JobClosed,
    PointsGranted,
    UserBound,
)
from frender.core.names import NAME_RULE, is_valid_name, normalised

__all__ = ["bind", "balance", "fine_for", "pay", "fine", "release", "confirm", "EVOLVERS"]


def fine_for(job: JobRecord) -> int:
    """Rule 9: what a friend of ``job`` would have earned: its share of the frames and its escrowed checks."""
    return -(-job.frames // max(1, len(job.friends))) + job.checks_per_friend


def balance(d: Draft, user: str) -> int:
    """``user``'s balance as the decision's events so far leave it (0 for no account)."""
    account = d.account(user)
    return account.balance if account is not None else 0


# ---------------------------------------------------------------- deciding


def bind(d: Draft, user: str, key: str) -> None:
    """Rule 1: bind a new name (in the alphabet, unique once normalised) to its key; refuse another key."""
    state = d.state
    account = state.accounts.get(user)
    if account is not None and account.key is not None:  # bound already, perhaps before today's alphabet: its owner goes on
        if account.key != key:
            raise Rejected("name-taken", f"username {user!r} belongs to another key")
        return
    if not is_valid_name(user):
        raise Rejected("bad-user", f"username {user[:64]!r} must be {NAME_RULE}")
    holder = state.names.get(normalised(user))
    if holder is not None:
        raise Rejected("name-taken", f"username {user!r} is the name {holder!r} (names are compared without case): choose another")
    held = state.owners.get(key)
    if held is not None and held != user:
        raise Rejected("key-taken", f"this key already holds the account {held!r}; one key, one account")
    d.emit(UserBound(user=user, key=key, grant=state.settings.starting_grant if account is None else 0))


def _bound(state: Master, user: str) -> Account:
    """The account named ``user``, once its owner bound it; else a clear refusal (Rule 1)."""
    account = state.accounts.get(user)
    if account is None or account.key is None:
        raise Rejected("unknown-user", f"no account {user!r}: its owner creates it first (frender account create {user} --master ...)")
    return account


def create_account(d: Draft, c: CreateAccount) -> None:
    bind(d, c.user, c.key)


def grant(d: Draft, c: GrantPoints) -> None:
    """The operator funds the key bound to the name, never the name alone (Rule 1)."""
    if c.amount <= 0:
        raise Rejected("bad-grant", "a grant is a positive number of points")
    account = _bound(d.state, c.user)
    if not c.key:
        raise Rejected("no-key", f"a grant names the key of the account it funds: ask {c.user!r}'s owner for the fingerprint `frender account show` prints")
    if account.key != c.key:
        raise Rejected(
            "wrong-key",
            f"the account {c.user!r} is bound to another key than {c.key}: these points would go to someone else. "
            "Ask its owner for the fingerprint `frender account show` prints; if that is the key you gave, "
            "someone else bound the name first and its owner binds another one",
        )
    d.emit(PointsGranted(user=c.user, amount=c.amount, reason=c.reason, key=c.key))


def pay(d: Draft, job: JobRecord, payouts: dict[str, int], now: float) -> None:
    """Rule 9: the closing report's points, to each friend's owner (checked against the escrow and the members before),
    held for ``hold_ttl`` (Rule 12)."""
    ttl = d.state.settings.hold_ttl
    for friend, points in sorted(payouts.items()):
        if points:
            d.emit(FriendPaid(job=job.job, friend=friend, user=d.state.friends[friend].user, points=points, held_until=now + ttl if ttl > 0 else 0.0))


def release(d: Draft, user: str, now: float) -> None:
    """Rule 12: ``user``'s holds that ran out by ``now`` become spendable (before its balance is spent or fined)."""
    account = d.account(user)
    for hold in account.holds if account is not None else ():
        if hold.until <= now:
            d.emit(HoldReleased(user=user, friend=hold.friend, job=hold.job, points=hold.points, why="matured"))


def confirm(d: Draft, friend: str, job: int) -> None:
    """Rule 12: the requester's own checks passed ``friend`` in ``job``: its holds from earlier jobs are confirmed."""
    user = d.state.friends[friend].user
    account = d.account(user)
    for hold in account.holds if account is not None else ():
        if hold.friend == friend and hold.job != job:
            d.emit(HoldReleased(user=user, friend=friend, job=hold.job, points=hold.points, why="confirmed"))


def fine(d: Draft, job: JobRecord, evicted: list[str], evidence: dict[str, str], now: float) -> None:
    """Rules 9 and 12: each newly evicted friend's owner forfeits every hold still running (to the submitter of the job
    that paid it), then pays what a friend of the job would have earned plus the caught friend's stake (the points
    paid to it since its trust was last lost, less what it just forfeited), capped at its balance, to this job's
    submitter (who is never fined for a friend of its own)."""
    share = fine_for(job)
    for friend in evicted:
        user = d.state.friends[friend].user
        if user == job.submitter:
            d.emit(FriendFined(job=job.job, friend=friend, user=user, to=job.submitter, forfeited=share, points=0, evidence=evidence.get(friend, "")))
            continue
        release(d, user, now)
        account = d.account(user)
        lost = 0
        for hold in account.holds if account is not None else ():
            payee = d.state.jobs[hold.job].submitter
            d.emit(HoldForfeited(user=user, friend=hold.friend, job=hold.job, to=payee, points=hold.points, caught=job.job))
            lost += hold.points if hold.friend == friend else 0
        stake = max(0, d.state.friends[friend].earned - lost)
        asked = share + stake
        taken = max(0, min(asked, balance(d, user)))
        d.emit(
            FriendFined(
                job=job.job, friend=friend, user=user, to=job.submitter, forfeited=asked, points=taken, evidence=evidence.get(friend, ""), stake=stake
            )
        )


# ---------------------------------------------------------------- evolving


def _account(state: Master, user: str) -> Account:
    return state.accounts.setdefault(user, Account(user=user))


def _user_bound(state: Master, e: UserBound) -> None:
    account = _account(state, e.user)
    account.key = e.key
    state.owners[e.key] = e.user
    state.names.setdefault(normalised(e.user), e.user)
    account.balance += e.grant
    state.granted += e.grant


def _points_granted(state: Master, e: PointsGranted) -> None:
    _account(state, e.user).balance += e.amount
    state.granted += e.amount


def _escrow_funded(state: Master, e: EscrowFunded) -> None:
    state.accounts[e.user].balance -= e.amount
    state.jobs[e.job].escrow += e.amount


def _friend_paid(state: Master, e: FriendPaid) -> None:
    state.jobs[e.job].paid += e.points
    account = _account(state, e.user)
    if e.held_until > 0:
        account.holds = (*account.holds, Hold(friend=e.friend, job=e.job, points=e.points, until=e.held_until))
    else:
        account.balance += e.points
    rec = state.friends.get(e.friend)
    if rec is not None:  # a draft's view holds the friends its events name
        rec.earned += e.points


def _hold_released(state: Master, e: HoldReleased) -> None:
    account = state.accounts[e.user]
    account.holds = _without(account.holds, e.friend, e.job)
    account.balance += e.points


def _hold_forfeited(state: Master, e: HoldForfeited) -> None:
    account = state.accounts[e.user]
    account.holds = _without(account.holds, e.friend, e.job)
    _account(state, e.to).balance += e.points


def _without(holds: tuple[Hold, ...], friend: str, job: int) -> tuple[Hold, ...]:
    return tuple(h for h in holds if (h.friend, h.job) != (friend, job))


def _friend_fined(state: Master, e: FriendFined) -> None:
    _account(state, e.user).balance -= e.points
    _account(state, e.to).balance += e.points


def _job_closed(state: Master, e: JobClosed) -> None:
    job = state.jobs[e.job]
    state.accounts[job.submitter].balance += e.refund
    job.refunded = e.refund


EVOLVERS: dict[type, Callable[[Master, Any], None]] = {
    UserBound: _user_bound,
    PointsGranted: _points_granted,
    EscrowFunded: _escrow_funded,
    FriendPaid: _friend_paid,
    FriendFined: _friend_fined,
    JobClosed: _job_closed,
    HoldReleased: _hold_released,
    HoldForfeited: _hold_forfeited,
}
