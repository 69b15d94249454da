"""The job core's decide-and-evolve cost per command on a large job: pure Python, no IO.

A job of ``--frames`` frames on ``--friends`` honest friends, each asking for work in turn and delivering what
it gets (identical copies, so every check agrees), driven through ``decide`` then ``evolve`` as the requester's
shell drives it. Reports the mean microseconds of CPU per command (``time.process_time``), the best of
``--repeat`` runs: other load on the machine only adds to a run.

    python bench/job_decide.py --frames 240 --friends 32
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


def run_job(frames: int, friends: int) -> tuple[int, float]:
    """Commands decided and CPU seconds spent until the job finished."""
    state, n = J.Requester(), 0
    settings = J.JobSettings(adaptive=False, crop_checks=False, random_order=False, seconds_per_frame=1.0, startup_seconds=0.0)

    def do(command: type, **kw) -> list[object]:
        nonlocal n
        n += 1
        if command is not J.StartJob:
            kw.setdefault("entropy", f"{n:032x}")
        events = J.decide(state, command(job=1, now=0.0, **kw))
        for event in events:
            J.evolve(state, event)
        return events

    started = time.process_time()
    do(J.StartJob, frames=tuple(range(1, frames + 1)), settings=settings, checks_escrowed=2)
    do(J.AddFriends, friends=tuple(J.GrantedFriend(friend=f"f{i}", owner=f"o{i}") for i in range(friends)))
    while not J.is_finished(state, 1) and n < 50 * frames:
        for i in range(friends):
            for task in [e for e in do(J.AskForTask, friend=f"f{i}") if isinstance(e, J.TaskAssigned)]:
                for frame in task.frames:
                    do(J.DeliverFrame, friend=task.friend, task=task.task, frame=frame, sha256=hashlib.sha256(b"%d" % frame).hexdigest(), ok=True)
            if J.is_finished(state, 1):
                break
    if not J.is_finished(state, 1):
        raise SystemExit(f"the job did not finish in {n} commands")
    return n, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--friends", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [run_job(args.frames, args.friends) for _ in range(args.repeat)]
    commands, seconds = min(runs, key=lambda r: r[1])
    print(json.dumps({"frames": args.frames, "friends": args.friends, "commands": commands, "us_per_command": round(seconds / commands * 1e6, 1)}))


if __name__ == "__main__":
    main()
