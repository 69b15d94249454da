"""`frender replay`: verify a log's hash chain, fold it, and tell its story.

The same deciders that ran live fold the log here, so what this prints is what
the process believed: an audit of a dispute needs nothing but the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from frender.core import master as m
from frender.store import SqliteLog, events, verify

__all__ = ["audit", "story_line", "render_text", "register_story", "register_fold"]

# One sentence per event kind, for people. Kinds without an entry print their fields.
_STORY: dict[type, Callable[[Any], str]] = {
    m.UserBound: lambda e: f"user {e.user} bound to key {_short(e.key)}" + (f", starting grant {e.grant}" if e.grant else ""),
    m.FriendRegistered: lambda e: f"friend {e.friend} registered: {e.profile}, {e.capacity} thread(s)",
    m.FriendReleased: lambda e: f"friend {e.friend} released from job {e.job} ({e.why})",
    m.RequesterTrusted: lambda e: f"requester {e.name} ({_short(e.key)}) trusted by the operator",
    m.PointsGranted: lambda e: f"{e.amount} points granted to {e.user} ({e.reason})",
    m.JobOpened: lambda e: f"job {e.job} opened for {e.submitter}: {e.frames} frames, {e.checks_per_friend} check(s) per friend, {e.profile}",
    m.FriendsAssigned: lambda e: f"job {e.job}: assigned {', '.join(e.friends)}"
    + (f" ({e.shortfall} fewer than asked)" if e.shortfall else ""),
    m.EscrowFunded: lambda e: f"job {e.job}: {e.amount} points from {e.user} into escrow",
    m.FriendPaid: lambda e: f"job {e.job}: {e.points} points to {e.user} for friend {e.friend}",
    m.FriendEvicted: lambda e: f"job {e.job}: friend {e.friend} evicted, unpaid",
    m.CheckRunUpdated: lambda e: f"friend {e.friend}: {e.run} clean check(s) in a row",
    m.JobClosed: lambda e: f"job {e.job} closed: {e.refund} points back to the submitter; requester log head seq {e.head_seq} {_short(e.head_hash)}",
}

# Further deciders (the requester's jobs) add their sentences and folds here.
_FOLDS: list[tuple[frozenset[type], Callable[[], Any], Callable[[Any, Any], Any], Callable[[Any, int | None], dict]]] = []


def register_story(stories: dict[type, Callable[[Any], str]]) -> None:
    _STORY.update(stories)


def register_fold(kinds, initial, evolve, summary) -> None:
    _FOLDS.append((frozenset(kinds), initial, evolve, summary))


def _short(text: str) -> str:
    return text.removeprefix("sha256:")[:12] + "…" if len(text) > 16 else text


def story_line(event: object) -> str:
    told = _STORY.get(type(event))
    if told is not None:
        return told(event)
    fields = ", ".join(f"{k}={v!r}" for k, v in vars(event).items()) if hasattr(event, "__dict__") else repr(event)
    return f"{type(event).tag}: {fields}"


def _job_of(event: object) -> int | None:
    return getattr(event, "job", None)


def audit(path: Path, *, job: int | None = None) -> dict:
    """Verify and fold the log at ``path``; raise LogError with the first bad seq."""
    log = SqliteLog(path, create=False)
    try:
        head = verify(log)
        pairs = list(events(log))
    finally:
        log.close()
    master_state = m.Master()
    folds = [(kinds, initial(), evolve, summary) for kinds, initial, evolve, summary in _FOLDS]
    has_master = False
    story = []
    for seq, event in pairs:
        if type(event) in m.EVENTS:
            has_master = True
            m.evolve(master_state, event)
        for i, (kinds, state, evolve, summary) in enumerate(folds):
            if type(event) in kinds:
                folds[i] = (kinds, evolve(state, event), evolve, summary)
        if job is None or _job_of(event) == job:
            story.append({"seq": seq, "tag": type(event).tag, "text": story_line(event)})
    report: dict[str, Any] = {"log": {"path": str(path), "events": head.seq, "head": head.hash}}
    if has_master:
        report["master"] = _master_summary(master_state, job)
    for _, state, _, summary in folds:
        part = summary(state, job)
        if part:
            report.update(part)
    report["story"] = story
    return report


def _master_summary(state: m.Master, job: int | None) -> dict:
    jobs = [
        {
            "job": j.job,
            "submitter": j.submitter,
            "frames": j.frames,
            "checks_per_friend": j.checks_per_friend,
            "profile": str(j.profile),
            "friends": list(j.friends),
            "evicted": list(j.evicted),
            "escrow": j.escrow,
            "paid": j.paid,
            "refunded": j.refunded,
            "closed": j.closed,
            "requester_head": {"seq": j.head_seq, "hash": j.head_hash} if j.closed else None,
        }
        for j in state.jobs.values()
        if job is None or j.job == job
    ]
    balances = {a.user: a.balance for a in state.accounts.values()}
    escrow = state.escrow()
    return {
        "users": balances,
        "friends": {
            f.friend: {"user": f.user, "profile": str(f.profile), "capacity": f.capacity, "job": f.job, "clean_run": f.clean_run}
            for f in state.friends.values()
        },
        "requesters": dict(state.requesters),
        "jobs": jobs,
        "ledger": {
            "granted": state.granted,
            "balances": sum(balances.values()),
            "escrow": escrow,
            "balanced": sum(balances.values()) + escrow == state.granted,
        },
    }


def render_text(report: dict) -> str:
    """The audit as text for people."""
    out = [f"{report['log']['path']}: {report['log']['events']} events, chain verified, head {report['log']['head'][:16]}…"]
    if "master" in report:
        part = report["master"]
        ledger = part["ledger"]
        out.append("")
        out.append(
            f"Ledger: {ledger['granted']} points granted = {ledger['balances']} in balances + {ledger['escrow']} in escrow"
            + ("" if ledger["balanced"] else "  ** DOES NOT BALANCE **")
        )
        for user, balance in sorted(part["users"].items()):
            out.append(f"  {user:<24} {balance:>8}")
        if part["friends"]:
            out.append("Friends:")
            for name, f in sorted(part["friends"].items()):
                out.append(f"  {name:<24} {f['profile']}, {f['clean_run']} clean checks in a row")
        for j in part["jobs"]:
            state = "closed" if j["closed"] else "open"
            out.append(
                f"Job {j['job']} ({state}) by {j['submitter']}: {j['frames']} frames on {len(j['friends'])} friends;"
                f" escrow {j['escrow']}, paid {j['paid']}, refunded {j['refunded']}"
                + (f"; evicted {', '.join(j['evicted'])}" if j["evicted"] else "")
            )
    for key in report:
        if key not in ("log", "master", "story") and isinstance(report[key], list):
            for line in report[key]:
                out.append(line if isinstance(line, str) else str(line))
    out.append("")
    out.append("Story:")
    out.extend(f"  {s['seq']:>6}  {s['text']}" for s in report["story"])
    return "\n".join(out)

