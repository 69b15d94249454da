"""Attacks on verification: the requester's pure core against simulated cheaters (no Blender, virtual clock).

Each row runs many jobs of M frames on N friends, on a virtual clock: a frame
takes an honest friend 1 unit, a lazy one 1/4, a forgery next to nothing; a
crop check takes ``--crop-cost`` units (measured on real Blender by
bench/crop_cost.py: 8.8% of a 1920x1080 frame with the denoiser, the default;
12.2% at 480x270). Friends pull work when idle and deliver each frame when it
is done; the requester's comparisons and own renders answer at once. A copy is
a token (the frame's true image, or a forgery); a crop of a copy is the copy's
own token (an honest crop agrees with an honest frame; a forger's crop of a
forged frame agrees with it), and the comparator judges tokens with the
figures measured on real Blender (docs/verification.md): a lazy render (a
quarter of the samples, denoised crop) is 0.86% off at 50.3 dB, everything
else forged is far off. Every job runs with ``BENCH_SETTINGS`` (the requester
renders each spotted window alone, all 8 of a spotted batch) unless
``--setting`` says otherwise. Honest friends are trusted (the master's reputation
10) unless the row says otherwise; cheaters are fresh (probationary), except
the reputation farmer (20) and the coalitions: "trusted colluders" farmed
reputation 6 (three jobs of two requesters at two a job: the master's Rule 7), "seasoned" 100; they render their first batch
of each job honestly (it is always spot-checked), then forge f and vouch for
each other; "alone" rows have no other friend and the job starves once they
are caught (nobody else is granted); "fresh sybils alone" are N fresh
accounts forging together.

Columns: jobs (those in which a cheater delivered a forgery: a cheater that
forged nothing in a job was honest there and cannot be caught); the share of
those in which every cheater that forged was evicted; forged frames final at
the job's end, and forged frames served then recalled, per 1,000 forged
deliveries; frames recalled per job; the net points of the owners of the
cheaters that forged in the job, after fines, counted from before they farmed trust (the master's Rules 9 and 12: the
farming pay is the stake, the last farming job's pay still held; a caught
friend forfeits the hold, is paid nothing for the job and is fined a friend's
share of it plus the rest of its stake, the fine asked); the friends' check work and the
requester's own windows as fractions of M (crop checks, by area and a
render's fixed cost); frames rendered again as a fraction of M; honest
friends evicted; the share of jobs that finished; the job's span on the
virtual clock (frames of render time).

    python bench/attacks.py            # >= 200 jobs a row (1,000 honest-only), N=8 and N=32
    python bench/attacks.py --jobs 20  # quicker, for a look
Writes bench/results.json key "attacks" and prints the table for docs/verification.md.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import multiprocessing
import shlex
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402

from frender.core import job as J  # noqa: E402
from frender.core._decider import Rejected  # noqa: E402

M = 240
FARM_JOB = 24  # what a farming job pays a friend (a 48-frame job on two friends): trust takes three such jobs (Rule 7)
# The settings measured by default (the table in docs/verification.md): the requester renders each spotted window
# alone, and every window of a spotted batch; ``--setting`` overrides them.
BENCH_SETTINGS: dict[str, object] = {"spot_alone": True, "spots_per_batch": 8}
CROP_COST = 0.088  # a 1/16 window of a 1920x1080 frame, padded and aligned for the denoiser, in frames (bench/crop_cost.py)
LAZY = dict(verdict="disagree", fraction_off=0.0086, max_diff=10, psnr=50.3)
FAR = dict(verdict="disagree", fraction_off=0.3, max_diff=200, psnr=9.0)
SAME = dict(verdict="identical", fraction_off=0.0, max_diff=0, psnr=99.0)


def truth(frame: int) -> str:
    return f"true:{frame}"


class Friend:
    def __init__(self, name: str, kind: str, f: float = 0.0, reputation: int = 10, owner: str = "", wait: int = 0, farmed: int = 0) -> None:
        self.name, self.kind, self.f, self.reputation = name, kind, f, reputation
        self.farmed = farmed  # points paid to it while it earned its trust (the master's stake: FriendRecord.earned)
        self.owner = owner or "o-" + name
        self.wait = wait  # renders this many frames honestly in each job before forging (it knows the first batch is spot-checked)
        self.rendered = 0

    def forges(self, job: int, frame: int) -> bool:
        if self.kind == "honest" or (self.wait and self.rendered <= self.wait):
            return False
        h = int(hashlib.sha256(f"{job}/{self.name}/{frame}".encode()).hexdigest()[:8], 16) / 2**32
        return h < self.f

    def render(self, job: int, frame: int, subject_copy: str | None, window: bool) -> str:
        """The token this friend returns for ``frame`` (a crop check when ``window``)."""
        if window:  # a crop check: the smart cheater and the lazy one see the window
            if self.kind == "colluding" and subject_copy is not None and subject_copy.startswith("col:"):
                return subject_copy  # vouches for its group's forgery
            if self.kind in ("smart", "honest", "farmer"):  # the smart one renders what it recognises as a check honestly
                return truth(frame)
            if self.kind.startswith("naive"):  # cannot tell checks apart: forges at its rate
                return self._forge(frame) if self.forges(job, frame) else truth(frame)
            if self.kind == "lazy":
                return f"lazy:{frame}"
            return truth(frame)
        self.rendered += 1
        if not self.forges(job, frame):
            return truth(frame)
        return self._forge(frame)

    def _forge(self, frame: int) -> str:
        return {
            "naive-black": "black", "naive-noise": f"noise:{self.name}:{frame}", "naive-stale": truth(frame + 1),
            "lazy": f"lazy:{frame}", "smart": f"forged:{self.name}:{frame}", "farmer": f"forged:{self.name}:{frame}",
            "colluding": f"col:{frame}",
        }[self.kind]


def compare(a: str, b: str) -> dict:
    if a == b:
        return SAME
    if {a.split(":")[0], b.split(":")[0]} == {"true", "lazy"} and a.split(":")[-1] == b.split(":")[-1]:
        return LAZY
    return FAR


POLL = 0.5  # an idle friend asks again after this long (frames of render time)
FORGE_TIME = 0.05  # a forged frame costs its forger next to nothing: it asks for work again at once


def run_job(number: int, friends: list[Friend], settings: J.JobSettings, crop_cost: float, m: int = M) -> dict:
    """One job on a virtual clock: a frame takes a friend 1 unit (a lazy one 1/4, a forgery FORGE_TIME), a crop
    check ``crop_cost``; friends pull work when idle, deliver each frame when it is done, and poll when given nothing."""
    state = J.Requester()
    n = [0]
    events: list[object] = []

    def do(command: type, now: float, **kw) -> list[object]:
        n[0] += 1
        try:
            decided = J.decide(state, command(job=1, now=now, entropy=f"{number:08x}{n[0]:08x}", **kw))
        except Rejected:
            return []  # a delivery for a task given up meanwhile: refused, as the shell would refuse it
        for e in decided:
            J.evolve(state, e)
        events.extend(decided)
        return decided

    for e in J.decide(state, J.StartJob(job=1, frames=tuple(range(1, m + 1)), settings=settings,
                                        checks_escrowed=settings.checks_to_escrow(m, len(friends)), now=0.0)):
        J.evolve(state, e)
    do(J.AddFriends, 0.0, friends=tuple(J.GrantedFriend(friend=f.name, owner=f.owner, reputation=f.reputation) for f in friends))
    by_name = {f.name: f for f in friends}
    copies: dict[str, str] = {}  # sha -> token
    forged_delivered = rendered = own_windows = 0
    forgers: set[str] = set()
    answered: set[tuple] = set()
    clock = 0.0

    def answer(start: int) -> None:
        """The shell's side, at once: comparisons of stored copies, and the requester's own renders."""
        nonlocal own_windows
        i = start
        while i < len(events):
            e = events[i]
            i += 1
            if isinstance(e, J.ComparisonRequested):
                key = ("c", e.check, e.against, e.a_sha256, e.b_sha256)
                if key not in answered:
                    answered.add(key)
                    do(J.RecordComparison, clock, check=e.check, against=e.against, a_sha256=e.a_sha256, b_sha256=e.b_sha256,
                       **compare(copies[e.a_sha256], copies[e.b_sha256]))
            elif isinstance(e, J.OwnRenderRequested) and ("o", e.check, e.purpose) not in answered:
                answered.add(("o", e.check, e.purpose))
                c = J.check_of(state, 1, e.check)
                if c is None or c.state not in ("own", "arbitrating", "framing"):
                    continue  # voided meanwhile (its pair was caught already): the shell renders only live requests
                # A whole frame (Rule 19: a window found its subject wrong) costs a frame, not a window.
                own_windows += 1 if e.purpose != J.Purpose.FRAME else 1 / crop_cost
                token = truth(e.frame)
                sha = hashlib.sha256(f"own/{e.check}/{token}".encode()).hexdigest()
                copies[sha] = token
                do(J.RecordOwnRender, clock, check=e.check, sha256=sha)

    queue: list[tuple[float, int, str, object]] = [(0.0, i, f.name, None) for i, f in enumerate(friends)]
    heapq.heapify(queue)
    seq = len(queue)
    while queue and not J.is_finished(state, 1) and not J.starved(state, 1):
        clock, _, name, delivery = heapq.heappop(queue)
        friend = by_name[name]
        start = len(events)
        if delivery is not None:  # a frame done: deliver it
            task, frame, token, last = delivery
            sha = hashlib.sha256(f"{name}/{task}/{frame}/{token}".encode()).hexdigest()
            copies[sha] = token
            do(J.DeliverFrame, clock, friend=name, task=task, frame=frame, sha256=sha, ok=True)
            answer(start)
            if last:
                seq += 1
                heapq.heappush(queue, (clock, seq, name, None))
            continue
        got = [e for e in do(J.AskForTask, clock, friend=name, keeping=()) if isinstance(e, J.TaskAssigned)]
        answer(start)
        if not got:
            if J.friend_status(state, 1, name) != J.FriendStatus.EVICTED:
                seq += 1
                heapq.heappush(queue, (clock + POLL, seq, name, None))
            continue
        task = got[0]
        at = clock
        for index, frame in enumerate(task.frames):
            window, subject_copy = False, None
            if task.kind == "check":
                c = J.check_of(state, 1, task.checks[index])
                window = c is not None and c.window is not None
                subject_copy = copies.get(c.subject_sha256) if c is not None else None
            token = friend.render(number, frame, subject_copy, window)
            honest_work = token == truth(frame) or token.startswith("lazy:")
            at += (crop_cost if window else 1.0) * (0.25 if token.startswith("lazy:") else 1.0) if honest_work else FORGE_TIME
            if task.kind != "check":
                rendered += 1
                if token != truth(frame):
                    forged_delivered += 1
                    forgers.add(name)
            seq += 1
            heapq.heappush(queue, (at, seq, name, (task.task, frame, token, index == len(task.frames) - 1)))
    report = J.report(state, 1)
    finished = report is not None
    if report is None:  # starved (Rule 16): every friend caught or blocked, none granted; nobody is paid
        assert J.starved(state, 1), "the job neither finished nor starved"
        report = _closing(state)
    finals = [J.final_copy(state, 1, n) for n in range(1, m + 1)]
    forged_final = sum(ff is not None and copies[ff.sha256] != truth(ff.frame) for ff in finals)
    ever_final = [ff for e in events if isinstance(e, J.FramesFinal) for ff in e.frames]
    forged_served = len({ff.frame for ff in ever_final if copies[ff.sha256] != truth(ff.frame)})
    crop_tasks = sum(1 for e in events if isinstance(e, J.TaskAssigned) and e.kind == "check")
    cheaters = {f.name for f in friends if f.kind != "honest"}
    evicted = set(report.evictions)
    earned: dict[str, int] = {}
    for e in events:
        if isinstance(e, J.CopyReceived):
            earned[e.friend] = earned.get(e.friend, 0) + 1
    paid = sum(report.payouts.get(c, 0) for c in cheaters) if finished else 0
    fines = sum(earned.get(c, 0) for c in cheaters & evicted)
    # The fine rule modelled from the report: a caught friend's owner pays what it forfeited here (copies
    # delivered and checks rendered) plus one point per frame the requester found it forged.
    fined = sum(report.forfeited.get(c, 0) + len(report.forged.get(c, ())) for c in cheaters & evicted)
    # The master's rules (Rules 9, 12): what a cheater's owner ends with, counted from before it farmed trust. Its
    # farming pay (its stake) is in hand, but the last job's is still held; caught, it forfeits the hold and is fined
    # a friend's share of the job plus the rest of its stake (the fine asked; the master takes it up to the balance).
    share = -(-m // len(friends)) + settings.checks_to_escrow(m, len(friends))
    net = 0
    for f in friends:
        if f.name not in forgers:  # honest here, or a cheater that forged nothing in this job: paid for honest work
            continue
        held = min(f.farmed, FARM_JOB)
        if f.name in evicted:
            net += f.farmed - held - (share + f.farmed - held)
        else:
            net += f.farmed + (report.payouts.get(f.name, 0) if finished else 0)
    return dict(
        forged=bool(forgers), caught=bool(forgers) and forgers <= evicted,
        forged_delivered=forged_delivered, forged_final=forged_final, forged_served=forged_served, points=paid - fines,
        net=net, net_report=paid - fined, recalled=len(report.recalled), finished=finished,
        checks=crop_tasks * crop_cost / m, again=(rendered - m) / m, own=own_windows * crop_cost / m,
        honest_evicted=len(evicted - cheaters), span=clock,
    )


def _closing(state: J.Requester) -> J.JobReport:
    """The report the job would close with now (what the shell sends when it ends a starved job)."""
    from frender.core.job import _escrow

    return _escrow.report(state.jobs[1])


def roster(row: str, n: int, number: int) -> list[Friend]:
    honest = lambda i, rep=10: Friend(f"h{i}", "honest", reputation=rep)  # noqa: E731
    f = float(row.partition(" f=")[2].split()[0]) if " f=" in row else 1.0
    if row.startswith("trusted colluders") or row.startswith("seasoned colluders"):
        # Accounts that farmed trust (reputation 6: one job's spot checks; "seasoned": 100), then forge together,
        # vouch for each other, and render their first batch of every job honestly (it is always spot-checked).
        size = row.split()[2]
        k = 2 if size == "2" else max(2, n // 2) if size == "50%" else n
        rep, farmed = (100, 50 * FARM_JOB) if row.startswith("seasoned") else (6, 3 * FARM_JOB)
        group = [Friend(f"c{i}", "colluding", f, reputation=rep, wait=8, farmed=farmed) for i in range(k)]
        return group if "alone" in row or size == "all" else group + [honest(i) for i in range(n - k)]
    if row.startswith("farmer then forges"):  # honest until trusted (one job), then forging everything
        return [Friend("x0", "farmer", 1.0, reputation=6, wait=8, farmed=3 * FARM_JOB)] + [honest(i) for i in range(n - 1)]
    if row.startswith("fresh sybils alone"):  # n fresh free accounts forging one shared image, no trusted friend live
        return [Friend(f"s{i}", "colluding", 1.0, reputation=0) for i in range(n)]
    if row.startswith("naive") or row.startswith("smart") or row.startswith("lazy") or row.startswith("farmer"):
        kind, _, f_ = row.partition(" f=")
        kind = kind.split(" ")[0]
        cheater = Friend("x0", kind, float(f_ or 1.0), reputation=20 if kind == "farmer" else 0, farmed=10 * FARM_JOB if kind == "farmer" else 0)
        return [cheater] + [honest(i) for i in range(n - 1)]
    if row.startswith("colluding"):
        share = int(row.split()[1].rstrip("%")) / 100
        k = max(1, round(n * share))
        rep = 0 if "nobody trusted" in row else 10
        return [Friend(f"c{i}", "colluding", 1.0, reputation=0) for i in range(k)] + [honest(i, rep) for i in range(n - k)]
    return [honest(i) for i in range(n)]


def frames_of(row: str) -> int:
    """A row's job length: M, or what its name says (M=48: the farm test's jobs)."""
    return int(row.split("M=")[1].split()[0]) if "M=" in row else M


ROWS = [
    *(f"naive-{kind} f={f}" for f in ("0.05", "0.2", "1") for kind in ("black", "noise", "stale")),
    "lazy f=1", "smart f=0.05", "smart f=0.2",
    "colluding 25%", "colluding 50%", "colluding 50% nobody trusted",
    "farmer f=0.2", "farmer then forges f=1",
    "trusted colluders 2 f=1", "trusted colluders 2 f=0.05", "trusted colluders 50% f=1", "trusted colluders 50% f=0.05",
    "trusted colluders 2 alone f=1", "trusted colluders 2 alone f=0.05", "trusted colluders 2 alone f=1 M=48",
    "trusted colluders all f=1", "trusted colluders all f=0.05", "seasoned colluders 50% f=1", "seasoned colluders all f=1",
    "fresh sybils alone f=1",
    "honest only",
]


def _one(args: tuple[str, int, int, float, dict]) -> dict:
    row, n, number, crop_cost, overrides = args
    settings = J.JobSettings(**{"seconds_per_frame": 1.0, "startup_seconds": 0.0, "adaptive": False, **BENCH_SETTINGS, **overrides})
    return run_job(number, roster(row, n, number), settings, crop_cost, frames_of(row))


def _setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, json.loads(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--honest-jobs", type=int, default=1000)
    parser.add_argument("--n", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--rows", nargs="*", default=ROWS)
    parser.add_argument("--crop-cost", type=float, default=CROP_COST, help="a crop check's render time, in frames")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--setting", type=_setting, action="append", default=[], metavar="KEY=JSON",
                        help="a JobSettings field for every job, e.g. unverified_batches=0")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()
    mark = _record.provenance()  # the code that runs
    results = []
    with multiprocessing.Pool(args.processes) as pool:
        for n in args.n:
            for row in args.rows:
                jobs = args.honest_jobs if row == "honest only" else args.jobs
                started = time.monotonic()
                runs = pool.map(_one, [(row, n, number, args.crop_cost, dict(args.setting)) for number in range(jobs)], chunksize=4)
                forged = sum(r["forged_delivered"] for r in runs)
                with_forgery = sum(r["forged"] for r in runs)
                out = dict(
                    row=row, n=n, jobs=jobs, jobs_with_forgery=with_forgery,
                    caught=sum(r["caught"] for r in runs) / with_forgery if with_forgery else None,
                    forged_final_per_1000=1000 * sum(r["forged_final"] for r in runs) / forged if forged else 0.0,
                    points_minus_fines=sum(r["points"] for r in runs) / jobs,
                    net_after_fines=sum(r["net"] for r in runs) / jobs,
                    recalled=sum(r["recalled"] for r in runs) / jobs,
                    forged_served_per_1000=1000 * sum(r["forged_served"] for r in runs) / forged if forged else 0.0,
                    finished=sum(r["finished"] for r in runs) / jobs,
                    check_work=sum(r["checks"] for r in runs) / jobs,
                    rendered_again=sum(r["again"] for r in runs) / jobs,
                    own_work=sum(r["own"] for r in runs) / jobs,
                    honest_evicted=sum(r["honest_evicted"] for r in runs),
                    span=sum(r["span"] for r in runs) / jobs,
                    seconds=round(time.monotonic() - started, 1),
                )
                results.append(out)
                print(json.dumps(out), flush=True)
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    command = "python bench/attacks.py " + shlex.join(sys.argv[1:])
    key = "attacks" if not args.setting else "attacks_with_" + "_".join(f"{k}={json.dumps(v)}" for k, v in args.setting)
    settings = {**BENCH_SETTINGS, **dict(args.setting)}  # what every job ran with, beyond the bench's fixed ones
    kept = data.get(key, {})
    if kept.get("crop_cost") == args.crop_cost and kept.get("settings", {}) == settings:
        # The same conditions: rows run now replace their earlier runs, the others stay (in the table's order).
        fresh = {(r["row"], r["n"]) for r in results}
        order = {row: i for i, row in enumerate(ROWS)}
        results = sorted([r for r in kept["rows"] if (r["row"], r["n"]) not in fresh] + results,
                         key=lambda r: (r["n"], order.get(r["row"], len(order))))
        command = "; ".join(dict.fromkeys([*kept.get("command", "").split("; "), command.strip()])).strip("; ")
    _record.update({key: dict(M=M, crop_cost=args.crop_cost, settings=settings, command=command.strip(), rows=results)}, args.out, mark)
    print("\n| N | attack | jobs (with a forgery) | caught in the job | forged final at the end per 1,000 | served, then recalled, per 1,000"
          " | recalled frames per job | net points of the cheaters after fines | checks / M | requester's own / M | checks + own / M"
          " | rendered again / M | honest evicted | finished | job's span |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        caught = "-" if r["caught"] is None else f"{r['caught']:.1%}"
        served = r.get("forged_served_per_1000", 0.0) - r["forged_final_per_1000"]
        print(f"| {r['n']} | {r['row']} | {r['jobs']} ({r['jobs_with_forgery']}) | {caught} | {r['forged_final_per_1000']:.1f}"
              f" | {served:.1f} | {r.get('recalled', 0.0):.2f} | {r.get('net_after_fines', r['points_minus_fines']):.1f}"
              f" | {r['check_work']:.1%} | {r['own_work']:.2%} | {r['check_work'] + r['own_work']:.1%} | {r['rendered_again']:.1%}"
              f" | {r['honest_evicted']} | {r.get('finished', 1.0):.0%} | {r['span']:.1f} |")


if __name__ == "__main__":
    main()
