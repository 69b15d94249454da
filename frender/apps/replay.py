"""`frender replay`: verify a log's hash chain, fold it, and tell its story.

The same deciders that ran live fold the log here, so what this prints is what
the process believed: an audit of a dispute needs nothing but the file. A log
may hold any name bound before today's alphabet, so every line of the text is
made safe to show (``frender.apps.terminal.safe``); the JSON escapes by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from frender.apps import requester as r
from frender.apps import words
from frender.apps.terminal import safe
from frender.core import job as j
from frender.core import master as m
from frender.store import SqliteLog, replay

__all__ = ["audit", "story_line", "render_text"]

# One sentence per event kind, for people. Kinds without an entry print their fields.
_STORY: dict[type, Callable[[Any], str]] = {
    m.UserBound: lambda e: f"user {e.user} bound to key {_short(e.key)}" + (f", starting grant {e.grant}" if e.grant else ""),
    m.FriendRegistered: lambda e: f"friend {e.friend} registered: {e.profile}, {e.capacity} thread(s)",
    m.FriendReleased: lambda e: f"friend {e.friend} released from job {e.job} ({e.why})",
    m.RequesterTrusted: lambda e: f"requester {e.name} ({_short(e.key)}) trusted by the operator",
    m.PointsGranted: lambda e: f"{e.amount} points granted to {e.user}" + (f" (key {_short(e.key)})" if e.key else "") + f" ({e.reason})",
    m.JobOpened: lambda e: f"job {e.job} opened for {e.submitter}: {e.frames} frames, {e.checks_per_friend} check(s) per friend, {e.profile}",
    m.JobPrioritised: lambda e: f"job {e.job}: priority {e.priority}",
    m.FriendsAssigned: lambda e: f"job {e.job}: assigned {', '.join(e.friends)}"
    + (f" ({e.shortfall} fewer than asked)" if e.shortfall else ""),
    m.EscrowFunded: lambda e: f"job {e.job}: {e.amount} points from {e.user} into escrow",
    m.FriendPaid: lambda e: f"job {e.job}: {e.points} points to {e.user} for friend {e.friend}",
    m.FriendEvicted: lambda e: f"job {e.job}: friend {e.friend} evicted, unpaid",
    m.CheckRunUpdated: lambda e: f"friend {e.friend}: {e.run} clean check(s) in a row",
    m.ReputationChanged: lambda e: f"job {e.job}: friend {e.friend} passed {e.passed}, failed {e.failed} of the requester's own checks; "
    f"now {words.standing(e.reputation, m.MasterSettings().trust_threshold)}",
    m.FriendFined: lambda e: f"job {e.job}: friend {e.friend} found wrong, forfeits its points; {e.user} fined {e.points} of {e.forfeited} points, "
    f"paid to {e.to}. Evidence: {e.evidence or '-'}",
    m.JobClosed: lambda e: f"job {e.job} {e.outcome or 'over'}: {e.refund} points back to the submitter; "
    f"requester log head seq {e.head_seq} {_short(e.head_hash)}",
}

def _figures(f) -> str:
    return f"{f.verdict}: {f.fraction_off:.2%} of pixels off, max diff {f.max_diff}/255, PSNR {f.psnr:.1f} dB" if f else "-"


def _who(friend: str | None) -> str:
    return friend or "the requester"


_STORY.update(
    {
        j.JobStarted: lambda e: f"job {e.job} started: {len(e.frames)} frames ({e.frames[0]}-{e.frames[-1]}), "
        f"{e.settings.checks_per_friend} check(s) per {'batch' if e.settings.check_timing == 'batch' else 'share'}"
        + (", adaptive checks" if e.adaptive else ""),
        j.FriendsJoined: lambda e: f"job {e.job}: friends {', '.join(f.friend for f in e.friends)} joined; ring {' -> '.join(e.ring)}"
        + (f"; checked: {', '.join(e.checked)}" if e.checked else ""),
        j.FriendLeft: lambda e: f"job {e.job}: friend {e.friend} gone",
        j.FriendReturned: lambda e: f"job {e.job}: friend {e.friend} back",
        j.MoreFriendsWanted: lambda e: f"job {e.job}: every friend gone; asking the master for {e.count} more",
        j.TaskAssigned: lambda e: f"job {e.job}: task {e.task} ({e.kind}) to {e.friend}: frames {_frames(e.frames)}",
        j.TaskDropped: lambda e: f"job {e.job}: task {e.task} of {e.friend} dropped ({e.why}); frames {_frames(e.frames)} back in the queue",
        j.CopyReceived: lambda e: f"job {e.job}: frame {e.frame} from {e.friend} ({e.role}) sha256 {e.sha256[:12]}…",
        j.CopyFaulted: lambda e: f"job {e.job}: frame {e.frame} from {e.friend} faulted: {e.reason}",
        j.ChecksDrawn: lambda e: f"job {e.job}: batch {e.batch} of {e.subject} ({_frames(e.frames)}): test frames {_frames(e.tests)} drawn",
        j.ComparisonRequested: lambda e: f"job {e.job}: check {e.check}, frame {e.frame}: comparing {_who(e.a_friend)} with {_who(e.b_friend)} ({e.against})",
        j.ComparisonMade: lambda e: f"job {e.job}: check {e.check} ({e.against}): {_figures(e.figures)}",
        j.OwnRenderRequested: lambda e: f"job {e.job}: check {e.check}: the requester renders frame {e.frame} ({e.purpose})",
        j.OwnRenderReceived: lambda e: f"job {e.job}: check {e.check}: the requester's render sha256 {e.sha256[:12]}…",
        j.CheckResolved: lambda e: f"job {e.job}: check {e.check} on frame {e.frame} of {e.subject} by {_who(e.verifier)}: {e.outcome}"
        + (f" (subject {e.subject_verdict}, verifier {e.verifier_verdict})" if e.subject_verdict else ""),
        j.CheaterEvicted: lambda e: f"job {e.job}: {e.friend} EVICTED on frame {e.evidence.frame}: its sha256 "
        f"{e.evidence.subject_sha256[:12] if e.evidence.subject == e.friend else e.evidence.verifier_sha256[:12]}…, "
        f"arbitration {e.evidence.arbitration_sha256[:12]}…; pair {_figures(e.evidence.pair)}; "
        f"vs subject {_figures(e.evidence.vs_subject)}; vs verifier {_figures(e.evidence.vs_verifier)}; "
        f"frames {_frames(e.discarded)} re-queued",
        j.FramesFinal: lambda e: f"job {e.job}: frames {_frames(tuple(f.frame for f in e.frames))} final",
        j.JobFinished: lambda e: f"job {e.job} finished: pays {dict(sorted(e.report.payouts.items()))}, "
        f"{e.report.arbitrations} arbitration(s), evicted {', '.join(e.report.evictions) or 'none'}",
        j.JobCancelled: lambda e: f"job {e.job} CANCELLED by its submitter: {sum(e.report.frame_points.values())} of {e.report.frames} frames final, "
        f"pays {dict(sorted(e.report.payouts.items()))}, the rest of {e.report.escrow} escrowed points goes back",
        j.RenderFailed: lambda e: f"job {e.job}: task {e.task} of {e.friend} could not render the file: {e.error}",
        j.JobFailed: lambda e: f"job {e.job} FAILED: its file cannot render ({e.error}); {sum(e.report.frame_points.values())} of {e.report.frames} "
        f"frames final, pays {dict(sorted(e.report.payouts.items()))}, the rest of {e.report.escrow} escrowed points goes back",
    }
)


def _frames(frames: tuple[int, ...]) -> str:
    """1-4,7,9-10: a compact list of frame numbers."""
    out, run = [], []
    for f in sorted(frames):
        if run and f == run[-1] + 1:
            run.append(f)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [f]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out) or "none"


_STORY.update(
    {
        r.JobAccepted: lambda e: f"job {e.job} accepted from {e.submitter}: .blend {e.blend_sha256[:12]}…, {e.width}x{e.height}, {e.profile}",
        r.JobOpening: lambda e: f"opening a job for {e.submitter}: {e.frames} frames on {e.friends} friends, .blend {e.blend_sha256[:12]}…",
        r.JobOpeningReleased: lambda e: (
            f"job {e.job} opened at the master but never accepted here: released, its points refunded"
            if e.job is not None else "an opening the master never granted: nothing to release"
        ),
        r.FriendKeys: lambda e: f"job {e.job}: keys of {', '.join(sorted(e.keys))} recorded",
        r.ReportDelivered: lambda e: f"job {e.job}: report delivered to the master (log head seq {e.head_seq} {e.head_hash[:12]}…)",
        r.EvictionsReported: lambda e: f"job {e.job}: the master told at once that {', '.join(e.friends)} {'was' if len(e.friends) == 1 else 'were'} caught",
        r.ReportRefused: lambda e: f"job {e.job}: the master REFUSED the report ({e.code}: {e.reason}); not retried",
    }
)


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
    master_state, jobs_state = m.Master(), j.Requester()
    has_master = has_jobs = False
    story = []
    seq = 0

    def fold(event: object) -> None:
        nonlocal has_master, has_jobs, seq
        seq += 1  # replay hands over a verified, gapless chain
        if type(event) in m.EVENTS:
            has_master = True
            m.evolve(master_state, event)
        elif type(event) in j.EVENTS:
            has_jobs = True
            j.evolve(jobs_state, event)
        if job is None or _job_of(event) == job:
            story.append({"seq": seq, "tag": type(event).tag, "text": story_line(event)})

    log = SqliteLog(path, create=False)
    try:
        head = replay(log, fold)
    finally:
        log.close()
    report: dict[str, Any] = {"log": {"path": str(path), "events": head.seq, "head": head.hash}}
    if has_master:
        report["master"] = _master_summary(master_state, job)
    if has_jobs:
        report["jobs"] = _jobs_summary(jobs_state, job)
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
            "state": words.master_job_state(closed=j.closed, outcome=j.outcome, friends=len(j.friends) - len(j.evicted)),
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
            f.friend: {
                "user": f.user, "profile": str(f.profile), "capacity": f.capacity, "job": f.job, "clean_run": f.clean_run, "reputation": f.reputation,
                "standing": words.standing(f.reputation, state.settings.trust_threshold),
            }
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


def _jobs_summary(state: j.Requester, job: int | None) -> list[dict]:
    out = []
    for number in j.job_numbers(state):
        if job is not None and number != job:
            continue
        jb = j.summary(state, number)
        out.append(
            {
                "job": number,
                "frames": jb.total,
                "final": len(jb.final),
                "phase": jb.phase,
                "friends": {
                    p.friend: {"final": p.final, "checks_paid": p.checks_paid, "status": p.status}
                    for p in j.progress(state, number)
                },
                "checks": jb.checks,
                "disagreements": jb.disagreements,
                "arbitrations": jb.arbitrations,
                "evicted": sorted(jb.evicted),
            }
        )
    return out


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
                out.append(f"  {name:<24} {f['standing']} (own checks passed in a row / needed to be trusted), {f['profile']}")
        for record in part["jobs"]:
            state = record["state"]
            out.append(
                f"Job {record['job']} ({state}) by {record['submitter']}: {record['frames']} frames on {len(record['friends'])} friends;"
                f" escrow {record['escrow']}, paid {record['paid']}, refunded {record['refunded']}"
                + (f"; evicted {', '.join(record['evicted'])}" if record["evicted"] else "")
            )
    for jb in report.get("jobs", []):
        out.append("")
        out.append(
            f"Job {jb['job']} ({jb['phase']}): {jb['final']} of {jb['frames']} frames final; {jb['checks']} checks, "
            f"{jb['disagreements']} disagreements, {jb['arbitrations']} arbitrations; evicted: {', '.join(jb['evicted']) or 'none'}"
        )
        for friend, f in sorted(jb["friends"].items()):
            out.append(f"  {friend:<24} {f['final']:>5} final frames, {f['checks_paid']:>3} paid checks  {f['status']}")
    out.append("")
    out.append("Story:")
    out.extend(f"  {s['seq']:>6}  {s['text']}" for s in report["story"])
    return "\n".join(safe(line) for line in out)

