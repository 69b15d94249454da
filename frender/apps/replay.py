"""`frender replay`: verify a log's hash chain, fold it, and tell its story.

The same deciders that ran live fold the log here, so what this prints is what
the process believed: an audit of a dispute needs nothing but the file. A log
may hold any name bound before today's alphabet, so every line of the text is
made safe to show (``frender.apps.terminal.safe``); the JSON escapes by itself.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable

from frender import codec
from frender.apps import requester_events as r
from frender.apps import words
from frender.apps.terminal import safe
from frender.core import job as j
from frender.core import master as m
from frender.store import SqliteLog, replay

__all__ = ["audit", "story_line", "render_text"]

# The audit of a log as `frender replay --json` prints it: JSON, read by people and by render_text.
Audit = dict[str, Any]

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
    m.FriendPaid: lambda e: f"job {e.job}: {e.points} points to {e.user} for friend {e.friend}"
    + (f", held until {e.held_until:.0f} or a later job's own checks" if e.held_until else ""),
    m.HoldReleased: lambda e: f"job {e.job}: {e.points} held points of friend {e.friend} released to {e.user} ({e.why})",
    m.HoldForfeited: lambda e: f"job {e.job}: {e.points} held points of friend {e.friend} forfeited by {e.user} to {e.to}"
    f" (caught in job {e.caught})",
    m.FriendEvicted: lambda e: f"job {e.job}: friend {e.friend} evicted, unpaid",
    m.CheckRunUpdated: lambda e: f"friend {e.friend}: {e.run} clean check(s) in a row",
    m.ReputationChanged: lambda e: (
        f"job {e.job}: friend {e.friend} passed {e.passed}, failed {e.failed} of the requester's own checks; "
        if e.passed or e.failed
        else f"friend {e.friend}: trust {'lost (it or a friend of its owner was found wrong)' if e.reputation == 0 else 'lapsed'}; "
    )
    + f"now {words.standing(e.reputation, m.MasterSettings().trust_threshold)}",
    m.FriendFined: lambda e: f"job {e.job}: friend {e.friend} found wrong, forfeits its points; {e.user} fined {e.points} of {e.forfeited} points"
    + (f" (stake {e.stake})" if e.stake else "")
    + ", "
    f"paid to {e.to}. Evidence: {e.evidence or '-'}",
    m.JobClosed: lambda e: f"job {e.job} {e.outcome or 'over'}: {e.refund} points back to the submitter; "
    f"requester log head seq {e.head_seq} {_short(e.head_hash)}",
}

def _figures(f: j.Figures | None) -> str:
    return f"{f.verdict}: {f.fraction_off:.2%} of pixels off, max diff {f.max_diff}/255, PSNR {f.psnr:.1f} dB" if f else "-"


def _who(friend: str | None) -> str:
    return friend or "the requester"


_STORY.update(
    {
        j.JobStarted: lambda e: f"job {e.job} started: {_started_frames(e.frames, e.settings.tiles)}, "
        f"{e.settings.checks_per_friend} check(s) per {'batch' if e.settings.check_timing == 'batch' else 'share'}"
        + (", adaptive checks" if e.adaptive else ""),
        j.FriendsJoined: lambda e: f"job {e.job}: friends {', '.join(f.friend for f in e.friends)} joined; ring {' -> '.join(e.ring)}"
        + (f"; checked: {', '.join(e.checked)}" if e.checked else ""),
        j.FriendLeft: lambda e: f"job {e.job}: friend {e.friend} gone",
        j.FriendReturned: lambda e: f"job {e.job}: friend {e.friend} back",
        j.MoreFriendsWanted: lambda e: f"job {e.job}: every friend gone; asking the master for {e.count} more",
        j.TaskAssigned: lambda e: f"job {e.job}: task {e.task} ({e.kind}) to {e.friend}: frames {_frames(e.frames)}",
        j.TaskDropped: lambda e: f"job {e.job}: task {e.task} of {e.friend} dropped ({e.why}); frames {_frames(e.frames)} back in the queue",
        j.CopyReceived: lambda e: f"job {e.job}: frame {_frame(e.frame)} from {e.friend} ({e.role}) sha256 {e.sha256[:12]}…",
        j.CopyFaulted: lambda e: f"job {e.job}: frame {_frame(e.frame)} from {e.friend} faulted: {e.reason}",
        j.ChecksDrawn: lambda e: f"job {e.job}: batch {e.batch} of {e.subject} ({_frames(e.frames)}): test frames {_frames(e.tests)} drawn",
        j.ComparisonRequested: lambda e: f"job {e.job}: check {e.check}, frame {_frame(e.frame)}: "
        f"comparing {_who(e.a_friend)} with {_who(e.b_friend)} ({e.against})",
        j.ComparisonMade: lambda e: f"job {e.job}: check {e.check} ({e.against}): {_figures(e.figures)}",
        j.OwnRenderRequested: lambda e: f"job {e.job}: check {e.check}: the requester renders frame {_frame(e.frame)} ({e.purpose})",
        j.OwnRenderReceived: lambda e: f"job {e.job}: check {e.check}: the requester's render sha256 {e.sha256[:12]}…",
        j.CheckResolved: lambda e: f"job {e.job}: check {e.check} on frame {_frame(e.frame)} of {e.subject} by {_who(e.verifier)}: {e.outcome}"
        + (f" (subject {e.subject_verdict}, verifier {e.verifier_verdict})" if e.subject_verdict else ""),
        j.CheaterEvicted: lambda e: f"job {e.job}: {e.friend} EVICTED on frame {_frame(e.evidence.frame)}: its sha256 "
        f"{e.evidence.subject_sha256[:12] if e.evidence.subject == e.friend else e.evidence.verifier_sha256[:12]}…, "
        f"arbitration {e.evidence.arbitration_sha256[:12]}…; pair {_figures(e.evidence.pair)}; "
        f"vs subject {_figures(e.evidence.vs_subject)}; vs verifier {_figures(e.evidence.vs_verifier)}; "
        + (f"whole frame vs subject {_figures(e.evidence.vs_frame)}; " if e.evidence.vs_frame else "")
        + f"frames {_frames(e.discarded)} re-queued",
        j.CropsUnequal: lambda e: f"job {e.job}: check {e.check}: the window of frame {_frame(e.frame)} differs from {e.subject}'s frame "
        f"({_figures(e.window)}) but the requester's whole frame agrees with it ({_figures(e.whole)}): the engine's crop, not "
        f"{e.subject}'s render; nobody evicted, the job checks whole frames from now on",
        j.FramesFinal: lambda e: f"job {e.job}: frames {_frames(tuple(f.frame for f in e.frames))} final",
        j.FramesRecalled: lambda e: f"job {e.job}: final frames RECALLED, {e.friend} was caught forging: "
        + "; ".join(part for part in (f"{_frames(e.requeued)} it rendered, rendered again" if e.requeued else "",
                                      f"{_frames(e.held)} it vouched for, judged again" if e.held else "") if part),  # fmt: skip
        j.ChecksReopened: lambda e: f"job {e.job}: {len(e.of)} agreed check(s) {e.friend} took part in judged again by the requester"
        + (f"; frames {_frames(e.holds)} wait for them" if e.holds else ""),
        j.JobFinished: lambda e: f"job {e.job} finished: pays {dict(sorted(e.report.payouts.items()))}, "
        f"{e.report.arbitrations} arbitration(s), evicted {', '.join(e.report.evictions) or 'none'}",
        j.JobCancelled: lambda e: f"job {e.job} CANCELLED by its submitter: {_final_of(e.report)}, "
        f"pays {dict(sorted(e.report.payouts.items()))}, the rest of {e.report.escrow} escrowed points goes back",
        j.RenderFailed: lambda e: f"job {e.job}: task {e.task} of {e.friend} could not render the file: {e.error}",
        j.JobFailed: lambda e: f"job {e.job} FAILED: {_failed(e)}; {_final_of(e.report)}, pays {dict(sorted(e.report.payouts.items()))}, "
        f"the rest of {e.report.escrow} escrowed points goes back",
    }
)


def _failed(e: j.JobFailed) -> str:
    """Why a job failed, as the story has always told a render failure."""
    if e.cause == j.Failure.STARVED:
        return f"starved, no friend could go on with it ({e.error})"
    return f"its file cannot render ({e.error})"


def _started_frames(units: tuple[int, ...], grid: j.TileGrid | None) -> str:
    """A job's frames as its artist asked for them: "8 frames (1-8)", or "1 frame (5) in 16 tiles (4x4)"."""
    if grid is None:
        return f"{len(units)} frames ({units[0]}-{units[-1]})"
    frames = sorted({grid.frame_of(u) for u in units})
    return f"{_in_tiles(len(frames), len(units), f'{grid.cols}x{grid.rows}')} ({_numbers(tuple(frames))})"


def _in_tiles(frames: int, tiles: int, grid: str = "") -> str:
    """"1 frame in 16 tiles (4x4)": a still's frames counted as the artist means them, its tiles beside."""
    return f"{frames} frame{'' if frames == 1 else 's'} in {tiles} tiles" + (f" ({grid})" if grid else "")


# The tiles of the job whose event is being told: its work units are then told as frames and tiles (Rule 20).
_GRID: ContextVar[j.TileGrid | None] = ContextVar("grid", default=None)


def _frame(unit: int) -> str:
    """A work unit as its frame: "5", or in a still's tiles "5 (tile 3)"."""
    grid = _GRID.get()
    return str(unit) if grid is None else f"{grid.frame_of(unit)} (tile {grid.tile_of(unit)})"


def _frames(units: tuple[int, ...]) -> str:
    """Work units as frames: "1-4,7", or in a still's tiles "5 (tiles 0-3,6), 6 (tiles 0-15)"."""
    grid = _GRID.get()
    if grid is None:
        return _numbers(units)
    tiles: dict[int, list[int]] = {}
    for unit in units:
        tiles.setdefault(grid.frame_of(unit), []).append(grid.tile_of(unit))
    return ", ".join(f"{frame} (tile{'s' if len(t) > 1 else ''} {_numbers(tuple(t))})" for frame, t in sorted(tiles.items())) or "none"


def _final_of(report: Any) -> str:
    """What a closing report says is final: "3 of 8 frames final", or in a still's tiles "12 of 16 tile shares final"
    (a tile is paid its share of its frame by area: a frame's shares are its tiles' count)."""
    points = sum(report.frame_points.values())
    grid = _GRID.get()
    if grid is None:
        return f"{points} of {report.frames} frames final"
    return f"{points} of {report.frames} tile shares final ({report.frames // grid.count} frame(s) in {grid.count} tiles each)"


def _numbers(frames: tuple[int, ...]) -> str:
    """1-4,7,9-10: a compact list of numbers."""
    out: list[str] = []
    run: list[int] = []
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
        r.JobAccepted: lambda e: f"job {e.job} accepted from {e.submitter}: .blend {e.blend_sha256[:12]}…, {e.width}x{e.height}, {e.profile}"
        + (f"; {e.crop_measure}" if e.crop_measure else ""),
        r.JobOpening: lambda e: f"opening a job for {e.submitter}: "
        + (f"{e.frames} frames" if not e.tiles else _in_tiles(e.frames // e.tiles, e.frames))
        + f" on {e.friends} friends, .blend {e.blend_sha256[:12]}…",
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


def story_line(event: object, grid: j.TileGrid | None = None) -> str:
    """One event in a sentence; ``grid``: the tiles of its job, whose work units are then told as frames and tiles."""
    told = _STORY.get(type(event))
    if told is not None:
        token = _GRID.set(grid)
        try:
            return told(event)
        finally:
            _GRID.reset(token)
    fields = ", ".join(f"{k}={v!r}" for k, v in vars(event).items()) if hasattr(event, "__dict__") else repr(event)
    return f"{codec.tag_of(event)}: {fields}"


def _job_of(event: object) -> int | None:
    return getattr(event, "job", None)


def _tiles_of(state: j.Requester, event: object) -> j.TileGrid | None:
    """The tiles of a requester's job an event of the job core is about (None: whole frames, or not such an event)."""
    number = _job_of(event)
    if type(event) not in j.EVENTS or number not in j.job_numbers(state) or isinstance(event, j.JobStarted):
        return None
    return j.tile_grid(state, number)


def audit(path: Path, *, job: int | None = None) -> Audit:
    """Verify and fold the log at ``path``; raise LogError with the first bad seq."""
    master_state, jobs_state = m.Master(), j.Requester()
    has_master = has_jobs = False
    story: list[dict[str, object]] = []
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
            story.append({"seq": seq, "tag": codec.tag_of(event), "text": story_line(event, _tiles_of(jobs_state, event))})

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


def _master_summary(state: m.Master, job: int | None) -> dict[str, Any]:
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
    balances = {a.user: a.balance + a.held for a in state.accounts.values()}  # what each owns, held pay (Rule 12) included
    escrow = state.escrow()
    return {
        "users": balances,
        "held": {a.user: a.held for a in state.accounts.values() if a.held},
        "friends": {
            f.friend: {
                "user": f.user, "profile": str(f.profile), "capacity": f.capacity, "job": f.job, "clean_run": f.clean_run, "reputation": f.reputation,
                "standing": words.standing(m.standing(state, f), state.settings.trust_threshold),
            }
            for f in state.friends.values()
        },
        "requesters": dict(state.requesters),
        "jobs": jobs,
        "ledger": {
            "granted": state.granted,
            "balances": sum(balances.values()),
            "held": state.held(),
            "escrow": escrow,
            "balanced": sum(balances.values()) + escrow == state.granted,
        },
    }


def _jobs_summary(state: j.Requester, job: int | None) -> list[dict[str, Any]]:
    out = []
    for number in j.job_numbers(state):
        if job is not None and number != job:
            continue
        jb = j.summary(state, number)
        grid = j.tile_grid(state, number)
        record: dict[str, Any] = {"job": number, "frames": jb.total, "final": len(jb.final)}
        if grid is not None:  # frames as the artist means them (a frame is final once all its tiles are); tiles beside
            per_frame: dict[int, int] = {}
            for unit in jb.final:
                per_frame[grid.frame_of(unit)] = per_frame.get(grid.frame_of(unit), 0) + 1
            record = {
                "job": number,
                "frames": jb.total // grid.count,
                "final": sum(1 for n in per_frame.values() if n == grid.count),
                "tiles": {"cols": grid.cols, "rows": grid.rows, "total": jb.total, "final": len(jb.final)},
            }
        out.append(
            {
                **record,
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


def render_text(report: Audit) -> str:
    """The audit as text for people."""
    out = [f"{report['log']['path']}: {report['log']['events']} events, chain verified, head {report['log']['head'][:16]}…"]
    if "master" in report:
        part = report["master"]
        ledger = part["ledger"]
        out.append("")
        out.append(
            f"Ledger: {ledger['granted']} points granted = {ledger['balances']} in balances ({ledger.get('held', 0)} of them held)"
            f" + {ledger['escrow']} in escrow"
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
        tiles = jb.get("tiles")
        counted = f"{jb['final']} of {jb['frames']} frames final"
        if tiles:
            grid = f"{tiles['cols']}x{tiles['rows']}"
            counted = (
                f"{_in_tiles(jb['frames'], tiles['total'], grid)}: {jb['final']} of {jb['frames']} final,"
                f" {tiles['final']} of {tiles['total']} tiles"
            )
        out.append(
            f"Job {jb['job']} ({jb['phase']}): {counted}; {jb['checks']} checks, "
            f"{jb['disagreements']} disagreements, {jb['arbitrations']} arbitrations; evicted: {', '.join(jb['evicted']) or 'none'}"
        )
        unit = "tiles" if tiles else "frames"  # what a friend renders: a still's tiles
        for friend, f in sorted(jb["friends"].items()):
            out.append(f"  {friend:<24} {f['final']:>5} final {unit}, {f['checks_paid']:>3} paid checks  {f['status']}")
    out.append("")
    out.append("Story:")
    out.extend(f"  {s['seq']:>6}  {s['text']}" for s in report["story"])
    return "\n".join(safe(line) for line in out)

