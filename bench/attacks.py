"""Attacks on verification: the requester's pure core against simulated cheaters (no Blender, virtual clock).

Each row runs many jobs of M frames on N friends. Friends pull tasks in turn
(one frame per step of a virtual clock); the shell is simulated: a copy is a
token (the frame's true image, or a forgery), a crop of a copy is the copy's
own token (an honest crop agrees with an honest frame; a forger's crop of a
forged frame agrees with it), and the comparator judges tokens with the
figures measured on real Blender (docs/verification.md): a lazy render (a
quarter of the samples, denoised crop) is 0.86% off at 50.3 dB, everything
else forged is far off. Honest friends are trusted (the master's reputation
10) unless the row says otherwise; cheaters are fresh (probationary), except
the reputation farmer.

Columns: the share of jobs in which every cheater was evicted; forged frames
that became final per 1,000 forged deliveries; points paid to cheaters minus
fines (a fine: the points the cheater would have earned in that job); extra
render work by friends as a fraction of M (crop checks at 16.4% of a frame
each, measured with the denoiser and a session's per-render cost, plus whole
frames rendered again); the requester's own render work (its windows) as a
fraction of M; honest friends evicted.

    python bench/attacks.py            # >= 200 jobs a row (1,000 honest-only), N=8 and N=32
    python bench/attacks.py --jobs 20  # quicker, for a look
Writes bench/results.json key "attacks" and prints the table for docs/verification.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender.core import job as J  # noqa: E402

M = 240
CROP_COST = 0.164  # a padded, aligned 1/16 crop with the denoiser, in frames (measured, incl. per-render cost)
LAZY = dict(verdict="disagree", fraction_off=0.0086, max_diff=10, psnr=50.3)
FAR = dict(verdict="disagree", fraction_off=0.3, max_diff=200, psnr=9.0)
SAME = dict(verdict="identical", fraction_off=0.0, max_diff=0, psnr=99.0)


def truth(frame: int) -> str:
    return f"true:{frame}"


class Friend:
    def __init__(self, name: str, kind: str, f: float = 0.0, reputation: int = 10) -> None:
        self.name, self.kind, self.f, self.reputation = name, kind, f, reputation

    def forges(self, job: int, frame: int) -> bool:
        if self.kind == "honest":
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


def run_job(number: int, friends: list[Friend], settings: J.JobSettings) -> dict:
    state = J.Requester()
    n = [0]
    events: list[object] = []

    def do(command: type, **kw) -> list[object]:
        n[0] += 1
        decided = J.decide(state, command(job=1, now=float(n[0]), entropy=f"{number:08x}{n[0]:08x}", **kw))
        for e in decided:
            J.evolve(state, e)
        events.extend(decided)
        return decided

    state_start = J.StartJob(job=1, frames=tuple(range(1, M + 1)), settings=settings,
                             checks_escrowed=settings.checks_to_escrow(M, len(friends)), now=0.0)
    for e in J.decide(state, state_start):
        J.evolve(state, e)
    do(J.AddFriends, friends=tuple(J.GrantedFriend(friend=f.name, owner="o-" + f.name, reputation=f.reputation) for f in friends))
    by_name = {f.name: f for f in friends}
    copies: dict[str, str] = {}  # sha -> token
    forged_delivered = rendered = 0
    own_windows = 0
    answered: set[tuple] = set()

    def answer(start: int) -> None:
        nonlocal own_windows
        i = start
        while i < len(events):
            e = events[i]
            i += 1
            if isinstance(e, J.ComparisonRequested):
                key = ("c", e.check, e.against, e.a_sha256, e.b_sha256)
                if key in answered:
                    continue
                answered.add(key)
                do(J.RecordComparison, check=e.check, against=e.against, a_sha256=e.a_sha256, b_sha256=e.b_sha256,
                   **compare(copies[e.a_sha256], copies[e.b_sha256]))
            elif isinstance(e, J.OwnRenderRequested):
                key = ("o", e.check)
                if key in answered:
                    continue
                answered.add(key)
                own_windows += 1
                token = truth(e.frame)
                sha = hashlib.sha256(f"own/{e.check}/{token}".encode()).hexdigest()
                copies[sha] = token
                do(J.RecordOwnRender, check=e.check, sha256=sha)

    names = [f.name for f in friends]
    step = 0
    while not J.is_finished(state, 1) and step < 200 * M:
        friend = by_name[names[step % len(names)]]
        step += 1
        start = len(events)
        got = [e for e in do(J.AskForTask, friend=friend.name, keeping=()) if isinstance(e, J.TaskAssigned)]
        answer(start)
        if not got:
            continue
        task = got[0]
        for frame in task.frames:
            window = False
            subject_copy = None
            if task.kind == "check":
                c = J.check_of(state, 1, task.checks[task.frames.index(frame)])
                window = c is not None and c.window is not None
                subject_copy = copies.get(c.subject_sha256) if c is not None else None
            token = friend.render(number, frame, subject_copy, window)
            if task.kind != "check":
                rendered += 1
                forged_delivered += token != truth(frame)
            sha = hashlib.sha256(f"{friend.name}/{task.task}/{frame}/{token}".encode()).hexdigest()
            copies[sha] = token
            start = len(events)
            do(J.DeliverFrame, friend=friend.name, task=task.task, frame=frame, sha256=sha, ok=True)
            answer(start)
    report = J.report(state, 1)
    assert report is not None, "the job did not finish"
    finals = [ff for e in events if isinstance(e, J.FramesFinal) for ff in e.frames]
    forged_final = sum(copies[ff.sha256] != truth(ff.frame) for ff in finals)
    crop_tasks = sum(1 for e in events if isinstance(e, J.TaskAssigned) and e.kind == "check")
    cheaters = {f.name for f in friends if f.kind != "honest"}
    evicted = set(report.evictions)
    earned: dict[str, int] = {}
    for e in events:
        if isinstance(e, J.CopyReceived):
            earned[e.friend] = earned.get(e.friend, 0) + 1
    paid = sum(report.payouts.get(c, 0) for c in cheaters)
    fines = sum(earned.get(c, 0) for c in cheaters & evicted)
    return dict(
        caught=bool(cheaters) and cheaters <= evicted,
        forged_delivered=forged_delivered, forged_final=forged_final, points=paid - fines,
        extra=(crop_tasks * CROP_COST + (rendered - M)) / M, own=own_windows * CROP_COST / M,
        honest_evicted=len(evicted - cheaters),
    )


def roster(row: str, n: int, number: int) -> list[Friend]:
    honest = lambda i, rep=10: Friend(f"h{i}", "honest", reputation=rep)  # noqa: E731
    if row.startswith("naive") or row.startswith("smart") or row.startswith("lazy") or row.startswith("farmer"):
        kind, _, f = row.partition(" f=")
        kind = kind.split(" ")[0]
        cheater = Friend("x0", kind, float(f or 1.0), reputation=20 if kind == "farmer" else 0)
        return [cheater] + [honest(i) for i in range(n - 1)]
    if row.startswith("colluding"):
        share = int(row.split()[1].rstrip("%")) / 100
        k = max(1, round(n * share))
        rep = 0 if "nobody trusted" in row else 10
        return [Friend(f"c{i}", "colluding", 1.0, reputation=0) for i in range(k)] + [honest(i, rep) for i in range(n - k)]
    return [honest(i) for i in range(n)]


ROWS = [
    "naive-black f=0.05", "naive-noise f=0.2", "naive-stale f=1", "naive-black f=1",
    "lazy f=1", "smart f=0.05", "smart f=0.2",
    "colluding 25%", "colluding 50%", "colluding 50% nobody trusted",
    "farmer f=0.2", "honest only",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--honest-jobs", type=int, default=1000)
    parser.add_argument("--n", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--rows", nargs="*", default=ROWS)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()
    settings = J.JobSettings(seconds_per_frame=1.0, startup_seconds=0.0, adaptive=False)
    results = []
    for n in args.n:
        for row in args.rows:
            jobs = args.honest_jobs if row == "honest only" else args.jobs
            started = time.monotonic()
            runs = [run_job(number, roster(row, n, number), settings) for number in range(jobs)]
            forged = sum(r["forged_delivered"] for r in runs)
            out = dict(
                row=row, n=n, jobs=jobs,
                caught=sum(r["caught"] for r in runs) / jobs if row != "honest only" else None,
                forged_final_per_1000=1000 * sum(r["forged_final"] for r in runs) / forged if forged else 0.0,
                points_minus_fines=sum(r["points"] for r in runs) / jobs,
                extra_work=sum(r["extra"] for r in runs) / jobs,
                own_work=sum(r["own"] for r in runs) / jobs,
                honest_evicted=sum(r["honest_evicted"] for r in runs),
                seconds=round(time.monotonic() - started, 1),
            )
            results.append(out)
            print(json.dumps(out), flush=True)
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data["attacks"] = dict(M=M, crop_cost=CROP_COST, rows=results)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print("\n| N | attack | jobs | caught in the job | forged final per 1,000 | points minus fines per job"
          " | extra work / M | requester's own / M | honest evicted |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        caught = "-" if r["caught"] is None else f"{r['caught']:.1%}"
        print(f"| {r['n']} | {r['row']} | {r['jobs']} | {caught} | {r['forged_final_per_1000']:.1f} | {r['points_minus_fines']:.1f} |"
              f" {r['extra_work']:.1%} | {r['own_work']:.2%} | {r['honest_evicted']} |")


if __name__ == "__main__":
    main()
