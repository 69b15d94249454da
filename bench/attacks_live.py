"""Attacks on a live farm: real master, requester and friend processes, and cheating friends of the real protocol.

Each row starts its own farm on 127.0.0.1 (``frender run master`` with its
default trust rule, two ``frender run requester`` processes the operator
trusts, and honest ``frender run friend`` processes, all rendering with the
modelled Blender, ``--blender modelled:SECONDS:160x90:1-M``) and its
cheaters: small clients written here (bench/live_cheaters.py) that register,
heartbeat, take the assignments the master signs, ask the requester for work
and deliver frames over the real transports. They farm trust first, as the
strongest attacker would under Rule 7 (own checks passed in ``trust_jobs``
jobs of ``trust_requesters`` requesters): they render honestly, job after
job, the artist's jobs sent to the two requesters in turn, until the master's
status counts every friend of the farm trusted (``--farm-jobs`` at most);
then they forge (noise, or black) and vouch for their coalition's forgeries
when they check them, in a job sent to the first requester. The artist's
jobs are submitted with ``frender.apps.client.submit``.

Rows:

- "coalition alone": two accounts, two friends, forging every frame and vouching for each other; no other friend live;
- "..., first batch honest": the same, each member's first batch of the job rendered honestly (it knows it is spot-checked);
- "coalition beside honest": the same pair beside 4 honest friends, farmed trusted with them;
- "farmer": one friend honest until trusted, then forging everything (black), beside 3 honest friends;
- "sybils": 8 fresh free accounts (no points) forging together, no trusted friend live, no farming;
- "sybils beside trusted": the same 8 beside 4 honest friends farmed trusted while the Sybils were off;
- "coalition ... f=F": the pair forging a fraction F of its frames (drawn from the job and frame), alone or beside honest friends.

Columns, read from the requester's log (``requester.db``), the master's
ledger (``master.db``) and the artist's folder after the attack job:
forged copies delivered; forged frames final at the job's end and forged
frames that were final at some moment (served: the client may fetch a final
frame at once), both per 1,000 forged; forged frames in the artist's folder
at the end; frames recalled; the cheaters' owners' net points after fines
(what they own at the end, held pay (Rule 12) included, minus the stake
granted before they farmed, so everything the farming jobs paid counts and
every forfeited hold and fine is taken off), and the attack job's own; honest friends evicted; check work
(friends' windows by their modelled cost, plus the requester's own renders)
and the requester's own renders, as fractions of M; how the job ended.

    python bench/attacks_live.py --repeats 3           # every row on 3 farms each, M=48, trust farmed on 2 requesters
    python bench/attacks_live.py --rows "coalition alone" --frames 24
Writes bench/results.json key "attacks_live" and prints the table for docs/verification.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402
from efficiency import check_costs, start_modelled_friend, start_modelled_requester  # noqa: E402
from live_cheaters import Coalition, run_cheater  # noqa: E402

from frender.apps import messages as msg  # noqa: E402
from frender.apps import requester as _shell_events  # noqa: E402,F401  (registers its log events)
from frender.apps.client import cancel, create_account, operator_call, status, submit  # noqa: E402
from frender.apps.demo import Cluster, start_master, wait_for_friends  # noqa: E402
from frender.apps.replay import audit  # noqa: E402
from frender.blender import ModelledBackend, decode_png, modelled_frame  # noqa: E402
from frender.core import job as core  # noqa: E402
from frender.core import master as mcore  # noqa: E402
from frender.store import SqliteLog, events  # noqa: E402

RESOLUTION = (160, 90)
SECONDS = 0.05  # a modelled frame's render time
STARVED_AFTER = 15.0  # seconds a job no friend can go on with asks the master for others before it fails (default 600)
STAKE = 20  # points each friend's owner holds before it lends (what a fine is taken from); Sybils hold none
FARM_JOBS = 10  # honest jobs at most before the attack (Rule 7 takes 3 jobs of 2 requesters at least)
REQUESTERS = ("requester", "requester2")  # the artist's jobs go to these in turn while farming; the attack to the first

ROWS: dict[str, dict] = {
    "coalition alone": dict(cheaters=2, honest=0, fraction=1.0, farm=True),
    "coalition alone, first batch honest": dict(cheaters=2, honest=0, fraction=1.0, farm=True, honest_first=8),
    "coalition beside honest": dict(cheaters=2, honest=4, fraction=1.0, farm=True),
    "farmer": dict(cheaters=1, honest=3, fraction=1.0, farm=True, kind="black"),
    "sybils": dict(cheaters=8, honest=0, fraction=1.0, farm=False, stake=0),
    "sybils beside trusted": dict(cheaters=8, honest=4, fraction=1.0, farm="honest", stake=0),
    "coalition alone f=0.2": dict(cheaters=2, honest=0, fraction=0.2, farm=True),
    "coalition alone f=0.05": dict(cheaters=2, honest=0, fraction=0.05, farm=True),
    "coalition beside honest f=0.2": dict(cheaters=2, honest=4, fraction=0.2, farm=True),
}


def run_row(name: str, *, frames: int = 48, seconds: float = SECONDS, farm_jobs: int = FARM_JOBS, attack_limit: float = 180.0,
            keep: Path | None = None) -> dict:
    """One row on a farm of its own; returns its figures."""
    root = Path(tempfile.mkdtemp(prefix="frender-attack-")) if keep is None else keep
    if keep is not None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    try:
        return _run_row(root, name, ROWS[name], frames, seconds, farm_jobs, attack_limit)
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def _run_row(root: Path, name: str, row: dict, frames: int, seconds: float, farm_jobs: int, attack_limit: float) -> dict:
    spec = f"modelled:{seconds}:{RESOLUTION[0]}x{RESOLUTION[1]}:1-{frames}"
    cluster = Cluster(root)
    honest = [f"friend{i + 1}" for i in range(row["honest"])]
    cheaters = [f"cheat{i + 1}" for i in range(row["cheaters"])]
    homes = {u: root / "homes" / u for u in [*honest, *cheaters, "artist"]}
    coalition = Coalition(RESOLUTION, kind=row.get("kind", "noise"), fraction=row["fraction"], honest_first=row.get("honest_first", 0))
    lines: list[str] = []
    figures: dict = {}
    try:
        master, master_home = start_master(cluster)
        requesters = [start_modelled_requester(cluster, master, spec=spec, seconds_per_frame=seconds, startup_seconds=0.05,
                                               extra=("--starved-after", str(STARVED_AFTER)), name=n) for n in REQUESTERS]

        async def main() -> None:
            keys = {u: (await create_account(master, home, u)).key for u, home in homes.items()}
            for n, requester in zip(REQUESTERS, requesters, strict=True):
                await operator_call(master, master_home, msg.Trust(key=requester.fingerprint, name=f"bench-{n}"))
            await operator_call(master, master_home, msg.Grant(user="artist", key=keys["artist"], amount=100_000, reason="bench"))
            for user in honest + cheaters:
                stake = STAKE if user in honest else row.get("stake", STAKE)
                if stake:
                    await operator_call(master, master_home, msg.Grant(user=user, key=keys[user], amount=stake, reason="stake"))
            for i in range(len(honest)):
                start_modelled_friend(cluster, master, i + 1, spec=spec)
            async with trio.open_nursery() as nursery:
                for user in cheaters:
                    nursery.start_soon(lambda u=user: run_cheater(
                        master=master, user=u, home=homes[u], coalition=coalition, seconds=seconds, frame_range=(1, frames),
                        log=lines.append))
                await wait_for_friends(master, master_home, len(honest) + len(cheaters), 120.0)
                await trio.sleep(0.5)
                figures.update(await _play(root, master, master_home, requesters, homes, honest, cheaters, coalition, row, frames,
                                           seconds, farm_jobs, attack_limit))
                nursery.cancel_scope.cancel()

        trio.run(main)
    finally:
        cluster.stop_together(list(cluster.procs))
    figures["params"] = {"frames": frames, "seconds_per_frame": seconds, "honest": len(honest), "cheaters": len(cheaters),
                         "fraction": row["fraction"], "kind": coalition.kind, "honest_first": coalition.honest_first,
                         "stake": row.get("stake", STAKE), "farm_jobs_max": farm_jobs, "requesters": len(REQUESTERS)}
    figures.update(_from_logs(root, figures, honest, cheaters, frames, seconds))
    figures["coalition"] = dict(coalition.counts)
    return figures


async def _trusted(master, master_home, friends: list[str]) -> dict[str, tuple[int, int]]:
    reply = await status(master, master_home)
    return {f.friend.split("/")[0]: (f.reputation, f.trust_threshold) for f in reply.friends if f.friend.split("/")[0] in friends}


async def _job(requester, homes, friends: int, out: Path, frames: int, seconds: float, limit: float) -> dict:
    """One artist's job: how it ended (finished, failed, or no end within ``limit`` s and cancelled)."""
    last: list[msg.ProgressReply] = []
    outcome: dict = {}
    with trio.move_on_after(limit) as scope:
        try:
            result = await submit(
                Path(homes["artist"]) / "scene.blend", requester=requester, user="artist", home=homes["artist"], friends=friends, out=out,
                frames=tuple(range(1, frames + 1)), poll=0.1, on_progress=last.append,
                backend=ModelledBackend(seconds, resolution=RESOLUTION, frame_range=(1, frames)),
            )
            outcome = {"job": result.job, "ended": "cancelled" if result.progress.cancelled else "finished", "why": ""}
        except Exception as exc:  # a failed job is a SubmitRefused naming why
            job = last[-1].job if last else None
            outcome = {"job": job, "ended": "failed", "why": str(exc)[:300]}
    if scope.cancelled_caught:
        job = last[-1].job if last else None
        why = (last[-1].problem or last[-1].waiting_detail or last[-1].waiting) if last else "never started"
        outcome = {"job": job, "ended": f"no end within {limit:g} s (cancelled then)", "why": why[:300]}
        if job is not None:
            with trio.move_on_after(20):
                await cancel(requester, homes["artist"], job)
    return outcome


async def _play(root, master, master_home, requesters, homes, honest, cheaters, coalition, row, frames, seconds, farm_jobs, attack_limit) -> dict:
    (Path(homes["artist"]) / "scene.blend").write_bytes(b"modelled scene: the modelled backend never reads it\n")
    friends = len(honest) + len(cheaters)
    farmed = []
    if row["farm"]:
        farming = honest if row["farm"] == "honest" else honest + cheaters  # "honest": the cheaters stay off, untrusted
        for k in range(farm_jobs):
            standing = await _trusted(master, master_home, farming)
            if all(r >= t > 0 for r, t in standing.values()):
                break
            # Rule 8: while a trusted friend is live, probationary ones are a minority of a job, so a member trusted ahead
            # of a fellow keeps it out (one trusted, one probationary: none joins): the attacker turns it off meanwhile.
            ahead = {u for u in cheaters if u in standing and standing[u][0] >= standing[u][1] > 0}
            coalition.away = set(cheaters) if row["farm"] == "honest" else ahead if len(ahead) < len(cheaters) else set()
            if coalition.away:
                await _gone(master, master_home, coalition.away)
            via = (k + 1) % len(requesters)  # the requesters in turn, the second first (the attack goes to the first)
            done = await _job(requesters[via], homes, friends - len(coalition.away), root / f"farm{k}", frames, seconds, attack_limit)
            await _closed(master, master_home, done.get("job"))
            done["requester"] = REQUESTERS[via]
            done["away"] = sorted(coalition.away)
            if coalition.away:
                coalition.away = set()
                await wait_for_friends(master, master_home, friends, 60.0)
            done["standing"] = {u: r for u, (r, _) in (await _trusted(master, master_home, cheaters)).items()}
            farmed.append(done)
    before = await status(master, master_home)
    standing_before = await _trusted(master, master_home, cheaters)
    coalition.mode = "forge"
    t0 = time.perf_counter()
    attack = await _job(requesters[0], homes, friends, root / "attack", frames, seconds, attack_limit)
    attack["seconds"] = round(time.perf_counter() - t0, 1)
    await _closed(master, master_home, attack.get("job"))
    await trio.sleep(0.5)
    standing_after = await _trusted(master, master_home, cheaters)
    return {
        "farming_jobs": len(farmed), "farming": farmed, "attack": attack,
        "cheaters_trusted_before": {u: {"reputation": r, "threshold": t, "trusted": r >= t > 0} for u, (r, t) in standing_before.items()},
        "cheaters_trusted_after": {u: {"reputation": r, "threshold": t, "trusted": r >= t > 0} for u, (r, t) in standing_after.items()},
        "balances_before_attack": {u: before.balances.get(u, 0) for u in cheaters},
    }


async def _gone(master, master_home, users: set[str]) -> None:
    """Wait (30 s at most) until the master counts no friend of ``users`` live."""
    with trio.move_on_after(30):
        while any(f.live for f in (await status(master, master_home)).friends if f.friend.split("/")[0] in users):
            await trio.sleep(0.2)


async def _closed(master, master_home, job: int | None) -> None:
    """Wait (30 s at most) for the master to have the job's closing report."""
    if job is None:
        return
    with trio.move_on_after(30):
        while not any(j.job == job and j.closed for j in (await status(master, master_home)).jobs):
            await trio.sleep(0.2)


def honest_sha(frame: int) -> str:
    return hashlib.sha256(modelled_frame(frame, width=RESOLUTION[0], height=RESOLUTION[1])).hexdigest()


def _from_logs(root: Path, figures: dict, honest: list[str], cheaters: list[str], frames: int, seconds: float) -> dict:
    job = figures.get("attack", {}).get("job")
    if job is None:
        return {"error": "the attack job never started"}
    log = SqliteLog(root / "requester.db", create=False)
    try:
        evs = [e for _, e in events(log) if getattr(e, "job", None) == job]
    finally:
        log.close()
    state = core.Requester()
    for e in evs:
        if type(e) in core.EVENTS:
            core.evolve(state, e)
    j = state.jobs[job]
    truth = {f: honest_sha(f) for f in range(1, frames + 1)}
    frame_roles = (core.Role.CANDIDATE, core.Role.PAIR)  # copies of whole frames that may become final (not windows, nor late ones)
    forged_copies = {(e.frame, e.sha256) for e in evs if isinstance(e, core.CopyReceived) and e.role in frame_roles and e.sha256 != truth[e.frame]}
    served = {f.frame for e in evs if isinstance(e, core.FramesFinal) for f in e.frames if f.sha256 != truth[f.frame]}
    final_forged = sum(1 for n, f in j.frames.final.items() if f.sha256 != truth[n])
    in_folder = 0
    for path in sorted((root / "attack").glob("*.png")):
        number = int(path.stem.rsplit("_", 1)[-1])
        got = decode_png(path.read_bytes(), width=RESOLUTION[0], height=RESOLUTION[1])
        want = decode_png(modelled_frame(number, width=RESOLUTION[0], height=RESOLUTION[1]), width=RESOLUTION[0], height=RESOLUTION[1])
        in_folder += int(not (got == want).all())
    # Check work in frames: a friend's window by its modelled cost, a whole test frame 1; the requester's own likewise.
    cost = check_costs(evs, seconds, RESOLUTION)
    friend_checks = sum(cost.get(e.check, 1.0) for e in evs if isinstance(e, core.CopyReceived) and e.role == "check" and e.check is not None)
    own = [e for e in evs if isinstance(e, core.OwnRenderRequested)]
    own_work = sum(cost.get(e.check, 1.0) for e in own)
    evicted = set(j.checks.evictions)
    cheater_names = {f"{u}/box" for u in cheaters}
    ledger = audit(root / "master.db")["master"]
    balances = ledger["users"]  # what each account owns: its balance and its held pay (Rule 12)
    held = ledger.get("held", {})
    stake = figures.get("params", {}).get("stake", STAKE)
    before = figures.get("balances_before_attack", {})  # the master's status: held pay included likewise
    users = set(cheaters)
    log = SqliteLog(root / "master.db", create=False)
    try:
        master_events = [e for _, e in events(log)]
    finally:
        log.close()
    fined = [e for e in master_events if isinstance(e, mcore.FriendFined) and e.job == job and e.user in users]
    forfeits = [e for e in master_events if isinstance(e, mcore.HoldForfeited) and e.caught == job and e.user in users]
    paid = [e for e in master_events if isinstance(e, mcore.FriendPaid) and e.user in users]
    forged = len(forged_copies)
    return {
        "forged_delivered": forged,
        "forged_final_at_end": final_forged,
        "forged_final_per_1000": round(1000 * final_forged / forged, 1) if forged else None,
        "forged_served": len(served),
        "forged_served_per_1000": round(1000 * len(served) / forged, 1) if forged else None,
        "forged_in_artists_folder": in_folder,
        "recalled_frames": sum(j.frames.recalled.values()),
        "final_frames": len(j.frames.final),
        "cheaters_caught": sorted(evicted & cheater_names),
        "honest_evicted": len(evicted - cheater_names),
        "spot_checks": j.checks.spot_checks,
        "own_renders": len(own),
        "check_work_per_m": round((friend_checks + own_work) / frames, 4),
        "own_work_per_m": round(own_work / frames, 4),
        "cheaters_net_points": {u: balances.get(u, 0) - stake for u in cheaters},
        "cheaters_net_points_total": sum(balances.get(u, 0) for u in cheaters) - len(cheaters) * stake,
        "cheaters_held_at_end": sum(held.get(u, 0) for u in cheaters),
        "attack_job_net_points": sum(balances.get(u, 0) - before.get(u, 0) for u in cheaters),
        "cheaters_paid_farming": sum(e.points for e in paid if e.job != job),
        "cheaters_paid_attack": sum(e.points for e in paid if e.job == job),
        "cheaters_held_forfeited": sum(e.points for e in forfeits),
        "cheaters_fined": sum(e.points for e in fined),
        "cheaters_fines_asked": sum(e.forfeited for e in fined),
        "cheaters_stake_asked": sum(e.stake for e in fined),
        "fines_in_attack_job": [f"{e.friend}: fined {e.points} of {e.forfeited} (stake {e.stake})" for e in fined],
    }


COLUMNS = ("attack", "farms", "farming jobs", "cheaters trusted", "forged delivered", "forged final at the end (per 1,000)",
           "forged served (per 1,000)", "forged in the artist's folder", "recalled frames", "cheaters' net points, all (attack jobs)",
           "caught cheaters whose owner lost nothing", "honest evicted", "spot checks", "check work / M (requester's own)", "job")


def summary(runs: list[dict]) -> dict:
    """A row's runs (one farm each) added up: counts summed, shares over the sums, work averaged, endings counted."""
    ok = [r for r in runs if "attack" in r and "error" not in r]
    total = lambda key: sum(r.get(key) or 0 for r in ok)  # noqa: E731
    forged = total("forged_delivered")
    ended: dict[str, int] = {}
    for r in ok:
        a = r["attack"]
        why = re.sub(r"^job \d+ failed: (job \d+: )?", "", a.get("why") or "").split(" (", 1)[0]
        words = a["ended"] + (f": {why}" if why else "")
        ended[words] = ended.get(words, 0) + 1
    gained = sum(1 for r in ok for f in r.get("cheaters_caught", ()) if r["cheaters_net_points"][f.split("/")[0]] >= 0)
    return {
        "farms": len(runs), "errors": [r["error"] for r in runs if "error" in r],
        "farming_jobs": total("farming_jobs"),
        "cheaters_trusted": sum(1 for r in ok for v in r.get("cheaters_trusted_before", {}).values() if v["trusted"]),
        "cheaters": sum(r["params"]["cheaters"] for r in ok),
        "forged_delivered": forged,
        "forged_final_at_end": total("forged_final_at_end"),
        "forged_final_per_1000": round(1000 * total("forged_final_at_end") / forged, 1) if forged else None,
        "forged_served": total("forged_served"),
        "forged_served_per_1000": round(1000 * total("forged_served") / forged, 1) if forged else None,
        "forged_in_artists_folder": total("forged_in_artists_folder"),
        "recalled_frames": total("recalled_frames"),
        "cheaters_net_points_total": total("cheaters_net_points_total"),
        "attack_job_net_points": total("attack_job_net_points"),
        "cheaters_paid_farming": total("cheaters_paid_farming"),
        "cheaters_held_forfeited": total("cheaters_held_forfeited"),
        "cheaters_fined": total("cheaters_fined"),
        "cheaters_held_at_end": total("cheaters_held_at_end"),
        "farmed_on": sorted({j.get("requester", "?") for r in ok for j in r.get("farming", ())}),
        "caught": sum(len(r.get("cheaters_caught", ())) for r in ok),
        "caught_owner_gained": gained,
        "honest_evicted": total("honest_evicted"),
        "spot_checks": total("spot_checks"),
        "check_work_per_m": round(total("check_work_per_m") / max(len(ok), 1), 4),
        "own_work_per_m": round(total("own_work_per_m") / max(len(ok), 1), 4),
        "ended": ended,
    }


def table(rows: dict[str, dict]) -> str:
    """The docs' table: one line a row (``rows[name]["summary"]``)."""
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    per = lambda n, p: f"{n} ({p:g})" if p is not None else f"{n} (-)"  # noqa: E731
    for name, row in rows.items():
        r = row["summary"]
        ended = "; ".join(f"{n}x {what}" for what, n in r["ended"].items()) or "; ".join(r["errors"])
        out.append("| " + " | ".join([
            name, str(r["farms"]), str(r["farming_jobs"]), f"{r['cheaters_trusted']} of {r['cheaters']}", str(r["forged_delivered"]),
            per(r["forged_final_at_end"], r["forged_final_per_1000"]), per(r["forged_served"], r["forged_served_per_1000"]),
            str(r["forged_in_artists_folder"]), str(r["recalled_frames"]), f"{r['cheaters_net_points_total']} ({r['attack_job_net_points']})",
            f"{r['caught_owner_gained']} of {r['caught']}", str(r["honest_evicted"]), str(r["spot_checks"]),
            f"{r['check_work_per_m']:.1%} ({r['own_work_per_m']:.1%})", ended.replace("|", "/"),
        ]) + " |")
    return "\n".join(out)


def run(rows: tuple[str, ...] = tuple(ROWS), frames: int = 48, seconds: float = SECONDS, farm_jobs: int = FARM_JOBS, attack_limit: float = 180.0,
        repeats: int = 1, keep: Path | None = None) -> dict:
    """Every row asked for, each on ``repeats`` farms of its own; returns {row: {"summary": ..., "runs": [...]}}."""
    out = {}
    for name in rows:
        runs = []
        for k in range(repeats):
            where = None if keep is None else keep / f"{name.replace(' ', '_').replace(',', '')}-{k}"
            try:
                runs.append(run_row(name, frames=frames, seconds=seconds, farm_jobs=farm_jobs, attack_limit=attack_limit, keep=where))
            except Exception as exc:  # noqa: BLE001  (a farm that failed to start: the row says so, the others go on)
                runs.append({"error": f"{type(exc).__name__}: {exc}"[:300]})
        out[name] = {"summary": summary(runs), "runs": runs}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="modelled seconds a frame")
    parser.add_argument("--farm-jobs", type=int, default=FARM_JOBS, help="honest jobs at most before the attack (they stop once every friend is trusted)")
    parser.add_argument("--attack-limit", type=float, default=180.0, help="seconds a job may take before it is called waiting forever")
    parser.add_argument("--keep", type=Path, help="keep each row's farm (logs, databases) under this folder")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/results.json alone")
    parser.add_argument("--json", type=Path, help="also write every row's figures here")
    parser.add_argument("--repeats", type=int, default=1, help="farms a row (each farms trust and attacks once); figures add up")
    args = parser.parse_args()
    mark = _record.provenance()
    t0 = time.perf_counter()
    rows = run(tuple(args.rows), frames=args.frames, seconds=args.seconds, farm_jobs=args.farm_jobs, attack_limit=args.attack_limit,
               repeats=args.repeats, keep=args.keep)
    print(table(rows))
    command = "python bench/attacks_live.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    entry = {"rows": rows, "command": command.strip(), "seconds": round(time.perf_counter() - t0, 1)}
    if not args.no_record:
        _record.update({"attacks_live": entry}, mark=mark)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
