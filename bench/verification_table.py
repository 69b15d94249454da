"""Measure the verification circle: detection rate and extra work, by simulation.

Drives the pure core (frender.core.job) with simulated friends on a virtual
clock. Images are content hashes: an honest render of frame f is
sha256("frame", f); a cheater fakes a fraction ``f`` of the frames it renders
(test frames included: it cannot tell them apart) with a black frame. The
simulated comparator says "identical" for the same content, "disagree"
otherwise. One cheater among N friends of distinct owners; a job counts as a
detection when the cheater is evicted.

    python bench/verification_table.py [--jobs 200] [--frames 240] [--friends 8]

Prints the Markdown table pasted into docs/verification.md.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frender.core import job as J  # noqa: E402

STARTUP, PER_FRAME = 0.5, 0.3  # seconds, the demo scene's measured costs


def image(frame: int) -> str:
    return hashlib.sha256(f"frame {frame}".encode()).hexdigest()


BLACK = hashlib.sha256(b"black").hexdigest()


class Sim:
    """One job on a virtual clock: friends pull tasks, render, deliver; the shell answers the core."""

    def __init__(self, *, frames: int, friends: int, cheat: float, settings: J.JobSettings, seed: int) -> None:
        self.rng = random.Random(seed)
        self.cheat = cheat
        self.cheater = "f0"
        self.state = J.Requester()
        self.now = 0.0
        self.queue: list[tuple[float, int, str, str, tuple]] = []
        self.seq = 0
        self.delivered_at: dict[int, float] = {}
        self.final_at: dict[int, float] = {}
        self.check_renders = 0
        self.own_renders = 0
        self.finished: J.JobReport | None = None
        names = [f"f{i}" for i in range(friends)]
        self.apply(J.StartJob(job=1, frames=tuple(range(1, frames + 1)), settings=settings,
                              checks_escrowed=settings.checks_to_escrow(frames, friends), now=0.0))
        self.apply(J.AddFriends(job=1, friends=tuple(J.GrantedFriend(friend=n, owner=f"owner{n}") for n in names),
                                entropy=self.entropy(), now=0.0))
        for n in names:
            self.at(0.0, n, "ask", ())

    def entropy(self) -> str:
        return "%032x" % self.rng.getrandbits(128)

    def at(self, when: float, friend: str, what: str, args: tuple) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, friend, what, args))

    def apply(self, command: object) -> None:
        events = J.decide(self.state, command)
        for e in events:
            J.evolve(self.state, e)
        for e in events:
            self.react(e)

    def react(self, e: object) -> None:
        if isinstance(e, J.TaskAssigned):
            t = self.now + STARTUP
            for frame in e.frames:
                t += PER_FRAME
                self.at(t, e.friend, "deliver", (e.task, frame))
            self.at(t, e.friend, "ask", ())
            if e.kind == "check":
                self.check_renders += len(e.frames)
        elif isinstance(e, J.CopyReceived) and e.role == "candidate":
            self.delivered_at.setdefault(e.frame, self.now)
        elif isinstance(e, J.ComparisonRequested):
            same = e.a_sha256 == e.b_sha256
            self.apply(J.RecordComparison(job=1, check=e.check, against=e.against, a_sha256=e.a_sha256, b_sha256=e.b_sha256,
                                          verdict="identical" if same else "disagree",
                                          fraction_off=0.0 if same else 0.9, max_diff=0 if same else 255,
                                          psnr=99.0 if same else 9.0, entropy=self.entropy(), now=self.now))
        elif isinstance(e, J.OwnRenderRequested):
            self.own_renders += 1
            self.apply(J.RecordOwnRender(job=1, check=e.check, sha256=image(e.frame), entropy=self.entropy(), now=self.now))
        elif isinstance(e, J.FramesFinal):
            for ff in e.frames:
                self.final_at[ff.frame] = self.now
        elif isinstance(e, J.JobFinished):
            self.finished = e.report

    def run(self) -> "Sim":
        while self.queue and self.finished is None:
            when, _, friend, what, args = heapq.heappop(self.queue)
            self.now = when
            if what == "ask":
                if J.friend_status(self.state, 1, friend) == "evicted":
                    continue
                if J.live_tasks(self.state, 1, friend):
                    self.at(self.now + 0.5, friend, "ask", ())
                    continue
                self.apply(J.AskForTask(job=1, friend=friend, entropy=self.entropy(), now=self.now))
                if not J.live_tasks(self.state, 1, friend):
                    self.at(self.now + 0.5, friend, "ask", ())  # nothing now: poll again
            else:
                task, frame = args
                fake = friend == self.cheater and self.rng.random() < self.cheat
                self.apply(J.DeliverFrame(job=1, friend=friend, task=task, frame=frame,
                                          sha256=BLACK if fake else image(frame), entropy=self.entropy(), now=self.now))
            if self.finished is None:
                self.apply(J.Tick(job=1, entropy=self.entropy(), now=self.now))
        assert self.finished is not None, "the job did not finish"
        return self


def cell(*, f: float, s: int, timing: str, jobs: int, frames: int, friends: int) -> dict[str, float]:
    settings = J.JobSettings(checks_per_friend=s, check_timing=timing, batch_size=8, adaptive=False,
                             seconds_per_frame=PER_FRAME, startup_seconds=STARTUP)
    caught, extra, lateness, makespan, touching = 0, [], [], [], []
    for seed in range(jobs):
        sim = Sim(frames=frames, friends=friends, cheat=f, settings=settings, seed=seed).run()
        report = sim.finished
        assert report is not None
        caught += "f0" in report.evictions
        touching.append(sum("f0" in (c.subject, c.verifier) for c in J.checks(sim.state, 1) if c.outcome != "void"))
        extra.append((sim.check_renders + sim.own_renders) / frames)
        lateness.append(statistics.mean(sim.final_at[k] - sim.delivered_at[k] for k in sim.final_at))
        makespan.append(max(sim.final_at.values()))
    return {
        "detected": caught / jobs,
        "formula": 1 - (1 - f) ** s,
        "touching": statistics.mean(touching),
        "extra": statistics.mean(extra),
        "late": statistics.mean(lateness),
        "makespan": statistics.mean(makespan),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--friends", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"M={args.frames} frames, N={args.friends} friends (one cheater), {args.jobs} jobs per row; "
          f"frame {PER_FRAME}s, start-up {STARTUP}s; batch size 8\n")
    print("| timing | s | f | detected | 1-(1-f)^s | checks over or by the cheater | extra work / M "
          "| frame waits for finality (s) | job time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for timing in ("end", "batch"):
        for s in (1, 5, 14):
            for f in (1.0, 0.5, 0.2, 0.1):
                r = cell(f=f, s=s, timing=timing, jobs=args.jobs, frames=args.frames, friends=args.friends)
                print(f"| {timing} | {s} | {f} | {r['detected']:.3f} | {r['formula']:.3f} | {r['touching']:.1f} "
                      f"| {r['extra']:.3f} "
                      f"| {r['late']:.1f} | {r['makespan']:.1f} |", flush=True)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
